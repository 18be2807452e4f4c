"""One module per exercise: ``kdcore/exercises/<id>.py`` holds its cases, the wrong answers candidates write (each
with its hint) and correct alternatives; ``manifest.toml`` beside it holds each exercise's record. Importing an
exercise module first loads :mod:`kdcore.checking`, whose registries it feeds."""
import kdcore.checking  # noqa: F401  (the catalogue decorators and case builders live there)
