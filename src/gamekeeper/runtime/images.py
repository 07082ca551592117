"""The image map: how image references resolve to local directories in embedded mode.

```yaml
images:
  registry.example.com/team/gameserver:1.2:     # the image reference, exactly as in the YAML
    path: images/gameserver                      # a directory; relative to the map file
    command: ["python3", "server.py"]            # ENTRYPOINT; a container's `command` overrides it
    args: []                                     # CMD; a container's `args` overrides it
    env: {GAME_MODE: demo}                       # default environment; the container's `env` wins
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gamekeeper.api.loading import InvalidObject, format_validation_error, parse_yaml_documents

IMAGES_ENV = "GAMEKEEPER_IMAGES"


class _ImageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class _ImageMapFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    images: dict[str, _ImageEntry]


@dataclass(frozen=True)
class Image:
    reference: str
    directory: Path
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class UnknownImage(LookupError):
    pass


@dataclass(frozen=True)
class ImageMap:
    source: Path | None
    images: dict[str, Image]

    def resolve(self, reference: str) -> Image:
        image = self.images.get(reference)
        if image is None:
            where = f"the image map {self.source}" if self.source else "the image map (none given)"
            known = ", ".join(sorted(self.images)) or "none"
            raise UnknownImage(
                f"image {reference!r} is not in {where}; add it under `images:` (known: {known}), "
                f"or pass --images FILE / set {IMAGES_ENV}"
            )
        return image

    @classmethod
    def empty(cls) -> ImageMap:
        return cls(None, {})


def load_image_map(path: Path) -> ImageMap:
    path = Path(path).resolve()
    try:
        text = path.read_text()
    except OSError as err:
        raise InvalidObject([f"{path}: cannot read the image map: {err.strerror}"]) from None
    docs = parse_yaml_documents(text, str(path))
    if len(docs) != 1:
        raise InvalidObject([f"{path}: expected one YAML document with `images:`"])
    try:
        parsed = _ImageMapFile.model_validate(docs[0])
    except ValidationError as err:
        raise InvalidObject(format_validation_error(f"{path}: ", err)) from None
    images: dict[str, Image] = {}
    problems: list[str] = []
    for ref, entry in parsed.images.items():
        directory = (path.parent / entry.path).resolve()
        if not directory.is_dir():
            problems.append(f"{path}: images[{ref!r}].path: {directory} is not a directory")
            continue
        images[ref] = Image(ref, directory, entry.command, entry.args, entry.env)
    if problems:
        raise InvalidObject(problems)
    return ImageMap(path, images)


def find_image_map(explicit: Path | None, near: list[Path], remembered: Path | None) -> Path | None:
    """--images, else $GAMEKEEPER_IMAGES, else images.yaml beside an applied file, else the last one used."""
    if explicit is not None:
        return explicit
    env = os.environ.get(IMAGES_ENV)
    if env:
        return Path(env)
    for file in near:
        candidate = file.parent / "images.yaml"
        if candidate.is_file():
            return candidate
    if remembered is not None and remembered.is_file():
        return remembered
    return None

