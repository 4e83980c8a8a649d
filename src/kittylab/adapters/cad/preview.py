"""Preview PNG of a mesh without a display: an isometric view drawn with numpy and
Pillow (painter's algorithm, flat shading). No OpenGL, VTK or X server needed."""

from __future__ import annotations

import io

import numpy as np
import trimesh
from PIL import Image, ImageDraw

_LIGHT = np.array([-0.35, -0.6, 0.75])  # view space: from the camera side, above
_BASE = np.array([70, 130, 200], dtype=float)
MAX_TRIANGLES = 60_000


def render_png(mesh: trimesh.Trimesh, size: int = 512) -> bytes:
    """An isometric, shaded picture of ``mesh``, ``size`` pixels square, as PNG bytes."""
    faces = np.asarray(mesh.faces)
    if len(faces) > MAX_TRIANGLES:
        # Dense scans: drawing every triangle would cost seconds for no visible gain.
        keep = np.linspace(0, len(faces) - 1, MAX_TRIANGLES).astype(int)
        faces = faces[keep]
    vertices = np.asarray(mesh.vertices, dtype=float)
    vertices = vertices - vertices.mean(axis=0)
    # Isometric camera: rotate 45° about z, then tilt about x.
    yaw = np.radians(45.0)
    pitch = np.radians(35.264)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    view = vertices @ rz.T @ rx.T
    triangles = view[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    lengths[lengths == 0] = 1.0
    normals = normals / lengths[:, None]
    # Camera looks along -y in view space; keep the faces turned towards it.
    facing = normals[:, 1] < 0
    triangles, normals = triangles[facing], normals[facing]
    light = _LIGHT / np.linalg.norm(_LIGHT)
    shade = 0.3 + 0.7 * np.clip(normals @ light, 0, 1)
    order = np.argsort(triangles[:, :, 1].mean(axis=1))[::-1]  # far first

    span = np.ptp(view[:, [0, 2]], axis=0).max() or 1.0
    margin = 0.08 * size
    scale = (size - 2 * margin) / span
    centre = (view[:, [0, 2]].max(axis=0) + view[:, [0, 2]].min(axis=0)) / 2
    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    for index in order:
        tri = triangles[index]
        xs = (tri[:, 0] - centre[0]) * scale + size / 2
        ys = size / 2 - (tri[:, 2] - centre[1]) * scale
        colour = tuple(int(c) for c in np.clip(_BASE * shade[index] * 1.2, 0, 255))
        draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
