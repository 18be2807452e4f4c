"""The exercise manifest (kdcore/exercises/manifest.toml) is the one place that names an exercise: every other
place that does is derived from it or checked against it here (rustlings' `dev check`)."""
from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path

import pytest

import kdcore
from kdcore.checking import CORRECT, EXERCISES, REFERENCES, VARIANTS
from kdcore.checking.manifest import records

ROOT = Path(__file__).resolve().parents[1]
RECORDS = records()
SEED_TSV = ROOT.parent / "shared" / "seed_questions.tsv"


def _docs_rows() -> dict[str, tuple[str, str, str]]:
    """id -> (notebook, signature, seeds) from the table of docs/EXERCISES.md."""
    text = (ROOT / "docs" / "EXERCISES.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z0-9_]+) \| (\d\d) \| `([^`]*)` \| .*? \| ([^|]*) \|$", text, flags=re.M)
    return {eid: (nb, sig, seeds.strip()) for eid, nb, sig, seeds in rows}


def _solution(notebook: str) -> Path:
    found = sorted((ROOT / "solutions").glob(f"{notebook}_*.ipynb"))
    assert len(found) == 1, f"expected one solutions/{notebook}_*.ipynb, found {found}"
    return found[0]


def _check_calls(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    calls = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            calls += re.findall(r"""(?:kd|kdcore)\.check\(\s*["']([a-z0-9_]+)["']""", "".join(cell["source"]))
    return calls


def test_the_registries_are_the_manifest():
    assert list(RECORDS) and set(RECORDS) == set(EXERCISES) == set(REFERENCES) == set(VARIANTS) == set(CORRECT)
    for eid, record in RECORDS.items():
        assert EXERCISES[eid].notebook == record.notebook
        assert EXERCISES[eid].reference == record.reference
        assert REFERENCES[eid] is record.load_reference()


def test_every_id_has_its_grading_module_at_the_path_the_id_gives():
    for eid, record in RECORDS.items():
        assert (ROOT / "kdcore" / "exercises" / f"{eid}.py").is_file(), eid
        module = importlib.import_module(record.module)
        assert list(module.CASES) == EXERCISES[eid].cases, f"{eid}: cases not taken from {record.module}"
        assert all(v.fn.__module__ == record.module for v in VARIANTS[eid] + CORRECT[eid]), eid


def test_package_exports_each_exercise_as_its_reference():
    for eid, record in RECORDS.items():
        assert getattr(kdcore, eid) is record.load_reference(), eid
        assert eid in kdcore.__all__


def test_docs_table_agrees_with_the_manifest_and_the_reference_signature():
    rows = _docs_rows()
    assert set(rows) == set(RECORDS)
    for eid, (notebook, signature, seeds) in rows.items():
        record = RECORDS[eid]
        assert notebook == record.notebook, eid
        assert signature == record.signature(), f"{eid}: docs say {signature}, the reference is {record.signature()}"
        assert [s.strip() for s in seeds.split(",")] == list(record.seeds), eid


def test_seed_ids_exist():
    known = {line.split("\t")[0] for line in SEED_TSV.read_text(encoding="utf-8").splitlines()[1:] if line}
    for eid, record in RECORDS.items():
        for seed in record.seeds:
            assert seed in known or re.fullmatch(r"\d{3}-title", seed), f"{eid}: unknown seed id {seed}"


def test_quiz_items_point_at_the_exercise_and_its_notebook():
    bank = tomllib.loads((ROOT / "quiz" / "bank.toml").read_text(encoding="utf-8"))
    by_exercise: dict[str, list[str]] = {}
    for item in bank["item"]:
        if item.get("exercise"):
            assert item["exercise"] in RECORDS, f"quiz item {item['id']}: unknown exercise {item['exercise']}"
            record = RECORDS[item["exercise"]]
            assert item["notebook"].startswith(f"{record.notebook}_"), \
                f"quiz item {item['id']}: notebook {item['notebook']} but {item['exercise']} is taught in {record.notebook}"
            by_exercise.setdefault(item["exercise"], []).append(item["id"])
    for eid, record in RECORDS.items():
        assert sorted(record.quiz) == sorted(by_exercise.get(eid, [])), f"{eid}: manifest quiz list != bank items"


def test_each_solution_notebook_checks_exactly_its_exercises():
    notebooks = {record.notebook for record in RECORDS.values()}
    for notebook in sorted(notebooks):
        expected = sorted(eid for eid, r in RECORDS.items() if r.notebook == notebook)
        assert sorted(set(_check_calls(_solution(notebook)))) == expected, notebook
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for eid in _check_calls(path):
            assert path.name.startswith(RECORDS[eid].notebook + "_"), f"{path.name} checks {eid}"


def test_readme_course_map_lists_each_notebooks_exercises():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d\d) \| .*? \| .*? \| (.*?) \|$", text, flags=re.M))
    for notebook in sorted({r.notebook for r in RECORDS.values()}):
        expected = [eid for eid, r in RECORDS.items() if r.notebook == notebook]
        assert notebook in rows, f"README course map has no row for notebook {notebook}"
        assert re.findall(r"`([a-z0-9_]+)`", rows[notebook]) == expected, notebook


def test_instructors_agenda_lists_each_notebooks_exercises():
    text = (ROOT / "INSTRUCTORS.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| \d+ \| (\d\d)_\w+ \| (.*?) \|", text, flags=re.M))
    for notebook in sorted({r.notebook for r in RECORDS.values()}):
        expected = [eid for eid, r in RECORDS.items() if r.notebook == notebook]
        assert notebook in rows, f"INSTRUCTORS agenda has no row for notebook {notebook}"
        assert [s.strip() for s in rows[notebook].split(",")] == expected, notebook


@pytest.mark.parametrize("eid", sorted(RECORDS))
def test_summary_and_signature_are_read(eid):
    record = RECORDS[eid]
    assert EXERCISES[eid].summary == record.summary and len(record.summary) > 10
    assert EXERCISES[eid].signature == record.signature()
    assert record.signature().startswith(f"{eid}(")


def test_the_quiz_knows_exactly_the_course_notebooks():
    from quiz.bank import NOTEBOOKS
    course = sorted(p.name for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00_"))
    assert sorted(NOTEBOOKS) == course
