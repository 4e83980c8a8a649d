from pathlib import Path

from pydantic import BaseModel

from kittylab.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _variables(model: type[BaseModel], prefix: str) -> list[str]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += _variables(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    variables = _variables(Settings, "KITTYLAB_")
    assert len(variables) > 20
    assert [v for v in variables if f"`{v}`" not in text] == []
