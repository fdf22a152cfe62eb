"Start-up: the package and every command's module import no heavy library; each command answers --help; TOML on 3.10."
import configparser, json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("diffusers", "transformers", "datasets", "cv2", "matplotlib", "ipywidgets")  # each adds about a second or more


def console_scripts() -> dict:
    "Command -> (module, function) of settings.ini's console_scripts."
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return {name: tuple(target.split(":")) for name, target in (e.split("=") for e in cfg["DEFAULT"]["console_scripts"].split())}


COMMANDS = {**{name: mod for name, (mod, _) in console_scripts().items()}, "python -m lllite_nb.world": "lllite_nb.world"}
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}


def heavy_after(code: str) -> list:
    "The heavy libraries in sys.modules after running `code` in a fresh interpreter."
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def test_the_commands_are_the_expected_ones():
    assert console_scripts() == {"lllite-train": ("lllite_nb.fit", "main"), "lllite-generate": ("lllite_nb.generation", "main"),
                                 "lllite-demo": ("lllite_nb.demo", "main")}


@pytest.mark.parametrize("module", ["lllite_nb", *sorted(set(COMMANDS.values()))])
def test_command_modules_import_nothing_heavy(module):
    assert heavy_after(f"import {module}") == []


def test_check_sees_a_heavy_import():
    "The check above can fail: the pipeline's chapter subclasses diffusers' pipeline, so it imports diffusers and transformers."
    assert {"diffusers", "transformers"} <= set(heavy_after("import lllite_nb.inference"))


def test_generate_imports_the_pipeline_only_when_it_runs():
    "lllite-generate refuses bad settings before the pipeline's chapter (and diffusers) is imported."
    code = ("from lllite_nb.generation import GenerateConfig, generate\n"
            "try: generate(GenerateConfig(steps=0))\nexcept ValueError as e: assert '--steps must be >= 1' in str(e), e")
    assert heavy_after(code) == []


KOHYA_FLAGS = {  # option names kohya's scripts use, one or more per command
    "lllite-train": ["--pretrained_model_name_or_path", "--dataset_config", "--cond_emb_dim", "--network_dim", "--max_train_steps",
                     "--learning_rate", "--output_dir", "--output_name", "--save_every_n_steps", "--mixed_precision"],
    "lllite-generate": ["--pretrained_model_name_or_path", "--control_net_lllite_models", "--guide_image_path",
                        "--control_net_multipliers", "--control_net_ratios", "--steps", "--scale", "--images_per_prompt", "--outdir"],
    "lllite-demo": ["--max_train_steps", "--cond_emb_dim", "--network_dim"],
    "python -m lllite_nb.world": ["--out_dir", "--ckpt_dir", "--seed"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_the_kohya_flags(command, tmp_path):
    argv = ([sys.executable, "-m", "lllite_nb.world"] if command.startswith("python") else
            [str(Path(sys.executable).with_name(command))])
    r = subprocess.run([*argv, "--help"], capture_output=True, text=True, env={**ENV, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith(f"usage: {command}")
    assert [f for f in KOHYA_FLAGS[command] if f not in r.stdout.split()] == []
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def test_tomli_is_the_toml_reader_without_tomllib(tmp_path):
    "Python 3.10 has no tomllib: 03_data then reads TOML with tomli (here the stdlib parser stands in under tomli's name)."
    code = ("import sys, tomllib; sys.modules['tomli'] = tomllib; sys.modules['tomllib'] = None\n"
            "import lllite_nb.data as d; assert d.tomllib is sys.modules['tomli']\n"
            f"print(d.read_dataset_config({str(tmp_path / 'd.toml')!r}).resolution)")
    (tmp_path / "d.toml").write_text('[general]\nresolution = [96, 64]\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = "i"\n'
                                     'conditioning_data_dir = "c"\n')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd="/")
    assert (r.returncode, r.stdout.strip()) == (0, "(96, 64)"), r.stderr[-2000:]


def test_tomli_is_required_before_python_3_11():
    "settings.ini's requirements, split as setup.py splits them, keep the environment marker whole."
    import shlex
    from packaging.requirements import Requirement
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini", encoding="utf-8")
    reqs = {r.name: r for r in map(Requirement, shlex.split(cfg["DEFAULT"]["requirements"]))}
    assert str(reqs["tomli"].marker) == 'python_version < "3.11"'
    assert [reqs["tomli"].marker.evaluate({"python_version": v}) for v in ("3.10", "3.11", "3.12")] == [True, False, False]
    assert all(r.marker is None for n, r in reqs.items() if n != "tomli")
