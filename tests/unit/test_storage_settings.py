from pathlib import Path

import pytest
from pydantic import ValidationError

from kittylab import bootstrap
from kittylab.adapters.storage.folder import FolderArtifactStore
from kittylab.adapters.storage.s3 import S3ArtifactStore
from kittylab.config import Settings, StorageSettings


def _settings(tmp_path: Path, **storage: object) -> Settings:
    return Settings(data_dir=tmp_path, storage=storage, _env_file=None)  # type: ignore[call-arg, arg-type]


def test_default_store_is_the_artifacts_folder_in_the_data_dir(tmp_path: Path) -> None:
    store = bootstrap.artifact_store(_settings(tmp_path))

    assert isinstance(store, FolderArtifactStore)
    assert store.root == tmp_path / "artifacts"


def test_a_file_url_picks_that_folder(tmp_path: Path) -> None:
    store = bootstrap.artifact_store(_settings(tmp_path, url=f"file://{tmp_path}/elsewhere"))

    assert isinstance(store, FolderArtifactStore)
    assert store.root == tmp_path / "elsewhere"


def test_an_s3_url_picks_the_s3_store_with_its_bucket_and_prefix(tmp_path: Path) -> None:
    store = bootstrap.artifact_store(
        _settings(tmp_path, url="s3://lab-artifacts/kitty/prod/", endpoint_url="http://h:8333/")
    )

    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix) == ("lab-artifacts", "kitty/prod")


def test_s3_url_is_normalised_without_trailing_slashes() -> None:
    assert StorageSettings(url="s3://bkt/a/b//").url == "s3://bkt/a/b"
    assert StorageSettings(url="s3://bkt/").url == "s3://bkt"
    assert StorageSettings(url="s3://bkt").prefix == ""


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://ab",  # shorter than 3
        "s3://Upper-Case",
        "s3://under_score",
        "s3://-dash-first",
        "s3://a..b",
        "s3://bkt/../up",
        "s3://bkt/.hidden",
        "http://bkt",
        "file://relative/path",
        "bucket-only",
    ],
)
def test_malformed_store_urls_are_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError):
        StorageSettings(url=url)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:8333", "ftp://host", "http://host/path"])
def test_endpoint_must_be_an_http_server_url(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="endpoint_url"):
        StorageSettings(url="s3://bkt", endpoint_url=endpoint)


def test_access_key_and_secret_come_together() -> None:
    with pytest.raises(ValidationError, match="set together"):
        StorageSettings(url="s3://bkt", access_key_id="AKIA123")  # type: ignore[arg-type]


def test_storage_secret_is_hidden_in_the_settings_repr() -> None:
    storage = StorageSettings(
        url="s3://bkt",
        access_key_id="key-id",  # type: ignore[arg-type]
        secret_access_key="very-secret-value",  # type: ignore[arg-type]
    )

    assert "very-secret-value" not in repr(storage)
    assert "very-secret-value" not in str(storage.model_dump())


def test_storage_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITTYLAB_STORAGE__URL", "s3://from-env/p")
    monkeypatch.setenv("KITTYLAB_STORAGE__SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("KITTYLAB_STORAGE__ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("KITTYLAB_STORAGE__PRESIGN_EXPIRY_SECONDS", "60")

    storage = Settings(_env_file=None).storage  # type: ignore[call-arg]

    assert (storage.bucket, storage.prefix, storage.presign_expiry_seconds) == ("from-env", "p", 60)
    assert storage.secret_access_key is not None
    assert storage.secret_access_key.get_secret_value() == "env-secret"
