"""The installable package (issue 9 item 1): a wheel, installed into a fresh venv, works from an empty folder.

The wheel is built from a copy of the source (``src/``, ``pyproject.toml``, ``README.md``), so no
stale ``build/`` folder of the checkout can leak files into it. The venv sees the system's
site-packages (torch is not reinstalled), and there the checkout's editable install would put
``/work/.../src`` on the path: the test asserts that the ``stsmooth`` imported in the venv is the
wheel's copy, inside the venv.
"""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import stsmooth

ROOT = Path(__file__).resolve().parents[1]
TINY = ["progress=false", "model.options.width=8", "byol.projector_hidden=32", "byol.projector_out=16",
        "byol.predictor_hidden=32", "optim.batch_size=32", "optim.steps_per_epoch=3", "optim.epochs=1",
        "optim.warmup_epochs=0", "eval.probe_size=32", "log=none"]


def _run(cmd, cwd, env):
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _has_setuptools(major: int) -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= major


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment) with the wheel of this checkout installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"), symlinks=False)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    # without build isolation when this environment has the build backend (no network needed)
    isolation = ["--no-build-isolation"] if _has_setuptools(68) else []
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", *isolation, "-q",
          "-w", tmp / "dist"], cwd=tmp, env=env)
    wheel, = (tmp / "dist").glob("stsmooth-*.whl")
    venv.create(tmp / "venv", system_site_packages=True, with_pip=False)
    bin_dir = tmp / "venv" / "bin"
    # --ignore-installed: the system's editable stsmooth must not count as "already satisfied"
    _run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--no-deps", "--no-index",
          "--ignore-installed", "-q", wheel], cwd=tmp, env=env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return bin_dir, env, tmp


@pytest.fixture()
def empty_dir(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


@pytest.mark.slow
def test_the_venv_imports_the_wheel_not_the_checkout(installed, empty_dir):
    bin_dir, env, tmp = installed
    where = _run([bin_dir / "python", "-c", "import stsmooth; print(stsmooth.__file__)"], empty_dir, env).strip()
    assert Path(where).is_relative_to(tmp / "venv"), where
    assert not Path(where).is_relative_to(ROOT), where


@pytest.mark.slow
def test_version_and_recipes_from_an_empty_folder(installed, empty_dir):
    bin_dir, env, _ = installed
    assert _run([bin_dir / "stsmooth", "--version"], empty_dir, env).strip() == f"stsmooth {stsmooth.__version__}"
    listing = _run([bin_dir / "stsmooth", "recipes"], empty_dir, env)
    packaged = sorted(p.stem for p in (ROOT / "src/stsmooth/recipes").glob("*.yaml"))
    rows = [line.split()[0] for line in listing.splitlines()[1:] if line[:1].strip() and "stsmooth train" not in line]
    assert rows == packaged, listing
    assert "byol_digits              byol          digits    digits_cnn" in listing


@pytest.mark.slow
def test_train_a_recipe_by_name_and_the_demo_from_an_empty_folder(installed, empty_dir):
    bin_dir, env, tmp = installed
    printed = _run([bin_dir / "stsmooth", "train", "byol_digits", *TINY, "out=run"], empty_dir, env)
    results = json.loads((empty_dir / "run" / "results.json").read_text())
    assert results["epochs"] == 1 and 0 <= results["teacher"]["knn_top1"] <= 100
    assert json.loads(printed)["epochs"] == 1
    assert "method: byol" in (empty_dir / "run" / "config.yaml").read_text()
    # the demo finds its recipe in the installed package (it looked beside a source checkout before);
    # digits: the packaged recipe is what is checked here, not Fashion-MNIST (tests/training/test_demo.py)
    _run([bin_dir / "stsmooth", "demo", "--seeds", "0", "--epochs", "1", "--data", "digits", "--out", "demo"], empty_dir, env)
    assert (empty_dir / "demo" / "table.md").read_text().count("| STS |") == 1
