"The comparison of chapter 08: the shipped results are complete, the README's table is theirs, a contender's contract."
import json
from pathlib import Path

import pytest

from lllite_nb.compare import COMPARE_RESULTS, CONTENDERS, make_contender, results_table

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_results_are_complete():
    r = json.loads(COMPARE_RESULTS.read_text())
    assert set(r) == {"config", "contenders", "base", "sweep", "seconds"} and list(r["contenders"]) == list(CONTENDERS)
    keys = {"label", "lr", "params", "file_bytes", "without", "with", "params_sdxl", "train_step", "gen_step", "curve", "repeats"}
    assert all(set(c) == keys for c in r["contenders"].values())
    assert [[p["step"] for p in c["curve"]] for c in r["contenders"].values()] == [[0, 100, 200, 300, 400, 500, 600]] * 4
    assert [c["file_bytes"] for c in r["contenders"].values()] == [898_896, 2_248_512, 8_624_008, 1_985_552]


def test_readme_table_is_the_shipped_results():
    table = results_table(json.loads(COMPARE_RESULTS.read_text()))
    assert table.count("\n") == 6 and table in (ROOT / "README.md").read_text()


def test_unknown_contender_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^unknown contender 'lora'; expected one of lllite16, lllite32, controlnet, t2i$"):
        make_contender("lora", None)
