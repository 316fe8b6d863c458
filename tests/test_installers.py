"""Extension installers never break the app (issue 17 section 3): ``install.py`` runs with pip held to the app's
package versions, whether it calls A1111's ``launch.run_pip`` or pip itself; what cannot be met is refused with a
message naming the extension and the package, and the app's packages are unchanged.

The pip runs here use ``--no-index`` (no registry is reached): the conflicts come from our constraints alone, which
pip reports as ResolutionImpossible, while the same command without them reports no distribution found.
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest

from modules import extensions as ext_mod
from modules import pip_constraints

PROTECTED_NOW = {name: pip_constraints.installed_version(name) for name in ("torch", "numpy", "transformers")}


def extension(root: Path, name: str, installer: str) -> ext_mod.Extension:
    folder = root / "extensions" / name
    folder.mkdir(parents=True)
    (folder / "install.py").write_text(textwrap.dedent(installer), encoding="utf-8")
    return ext_mod.Extension(name=name, path=folder)


def run(root: Path, *exts: ext_mod.Extension) -> None:
    ext_mod.run_installers(list(exts), root)
    assert {name: pip_constraints.installed_version(name) for name in PROTECTED_NOW} == PROTECTED_NOW


def test_run_pip_refuses_a_protected_package_at_another_version_naming_extension_and_package(tmp_path):
    ext = extension(tmp_path, "wants-old-transformers", """
        import launch
        launch.run_pip('install "transformers<5" --no-index --dry-run', "requirements for the test")
        open("installed.txt", "w").write("ran past run_pip")
    """)
    run(tmp_path, ext)
    assert len(ext.errors) == 1, ext.errors
    version = PROTECTED_NOW["transformers"]
    assert "wants-old-transformers asks for transformers<5" in ext.errors[0]
    assert f"this app needs transformers {version}" in ext.errors[0]
    assert not (ext.path / "installed.txt").exists()


@pytest.mark.parametrize("requirement, package", [("numpy<2", "numpy"), ("torchvision", "torchvision")])
def test_an_installer_calling_pip_itself_is_held_by_the_constraints(tmp_path, requirement, package):
    """adetailer's installer runs ``python -m pip install ultralytics`` (which needs torchvision) itself."""
    ext = extension(tmp_path, "own-pip", f"""
        import subprocess, sys
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run", "{requirement}"],
                       check=True)
    """)
    run(tmp_path, ext)
    assert len(ext.errors) == 1
    assert "pip could not install it beside this app's packages" in ext.errors[0]
    # pip names our constraint as the cause: the refusal really is the constraints'
    assert f"The user requested (constraint) {package}" in ext.errors[0], ext.errors[0]


def test_a_failed_installer_is_reported_at_every_start_but_run_again_only_when_it_changes(tmp_path):
    ext = extension(tmp_path, "fails", """
        open("runs.txt", "a").write("x")
        raise RuntimeError("fails: needs something")
    """)
    run(tmp_path, ext)
    assert "RuntimeError: fails: needs something" in ext.errors[0]
    again = ext_mod.Extension(name="fails", path=ext.path)
    run(tmp_path, again)  # the next start: same installer, same packages
    assert (ext.path / "runs.txt").read_text() == "x"
    assert "fails: needs something" in again.errors[0] and "not run again" in again.errors[0]
    (ext.path / "install.py").write_text('open("runs.txt", "a").write("y")\n', encoding="utf-8")
    fixed = ext_mod.Extension(name="fails", path=ext.path)
    run(tmp_path, fixed)
    assert fixed.errors == [] and (ext.path / "runs.txt").read_text() == "xy"


def test_an_installer_that_fits_runs_once_with_the_launch_surface(tmp_path):
    ext = extension(tmp_path, "fits", """
        import json, launch
        assert launch.is_installed("torch") and not launch.is_installed("surely-not-a-package-xyz")
        launch.run_pip("install --no-index --dry-run numpy", "numpy (already there)")
        json.dump({"skip_install": launch.skip_install, "python": launch.python, "tag": launch.git_tag(),
                   "repo": launch.repo_dir("x"), "met": launch.requirements_met("reqs.txt")},
                  open("report.json", "w"))
    """)
    (ext.path / "reqs.txt").write_text(f"numpy=={PROTECTED_NOW['numpy']}\n# a comment\n", encoding="utf-8")
    run(tmp_path, ext)
    assert ext.errors == []
    import json

    report = json.loads((ext.path / "report.json").read_text())
    assert report["skip_install"] is False and report["met"] is True
    assert Path(report["python"]) == Path(sys.executable) and report["repo"].endswith("repositories/x")
    (ext.path / "report.json").unlink()
    run(tmp_path, ext)  # unchanged installer: not run again
    assert not (ext.path / "report.json").exists()


def test_conflicts_and_constraint_lines():
    torch_version = importlib.metadata.version("torch")
    assert f"torch=={torch_version}" in pip_constraints.constraint_lines()
    assert "torchvision<0a0" in pip_constraints.constraint_lines()  # not installed here: nothing may pull it in
    assert pip_constraints.conflicts(f'install "torch=={torch_version}" rich') == []
    assert pip_constraints.conflicts("install -U numpy>=1.20 -r requirements.txt") == []
    assert pip_constraints.conflicts('install "numpy<2"') == [f"numpy<2 (this app needs numpy "
                                                              f"{PROTECTED_NOW['numpy']})"]
    assert pip_constraints.conflicts("uninstall -y gradio") == ["uninstalling gradio (this app needs it)"]
    assert pip_constraints.conflicts(["install", "torchvision==0.28.0"]) == [
        "torchvision==0.28.0 (cannot be installed beside this app's packages)"]


def _fake_distribution(folder: Path, name: str) -> None:
    """A distribution as pip leaves it (a .dist-info folder on sys.path): what a manual ``pip install`` adds."""
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")


def test_a_failed_installer_runs_again_once_the_installed_packages_change(tmp_path, monkeypatch):
    """adetailer after ``pip install ultralytics`` by hand: the next start runs its installer again."""
    ext = extension(tmp_path, "needs-pkg", """
        import os
        open("runs.txt", "a").write("x")
        if not os.path.exists("fixed.txt"):
            raise RuntimeError("needs a package")
    """)
    run(tmp_path, ext)
    assert "needs a package" in ext.errors[0]
    (ext.path / "fixed.txt").write_text("", encoding="utf-8")  # it would pass now, but nothing says so yet
    again = ext_mod.Extension(name="needs-pkg", path=ext.path)
    run(tmp_path, again)  # same installer, same packages: not run again, the failure is repeated
    assert (ext.path / "runs.txt").read_text() == "x" and "not run again" in again.errors[0]
    site = tmp_path / "site"
    _fake_distribution(site, "sd_webui_test_new_pkg")  # a package installed since
    monkeypatch.syspath_prepend(str(site))
    fixed = ext_mod.Extension(name="needs-pkg", path=ext.path)
    run(tmp_path, fixed)
    assert (ext.path / "runs.txt").read_text() == "xx" and fixed.errors == []


def test_a_failed_installer_and_the_import_error_it_causes_are_one_message(tmp_path):
    ext = extension(tmp_path, "like-adetailer", 'raise RuntimeError("torchvision cannot be installed here")\n')
    scripts = ext.path / "scripts"
    scripts.mkdir()
    (scripts / "main.py").write_text("import sd_webui_test_no_such_module\n", encoding="utf-8")
    (scripts / "other.py").write_text("import sd_webui_test_no_such_module\n", encoding="utf-8")
    run(tmp_path, ext)
    ext_mod.load_scripts([ext])
    assert len(ext.errors) == 1, ext.errors
    message = ext.errors[0]
    assert "torchvision cannot be installed here" in message and "Traceback" not in message
    assert "so the extension is not loaded: main.py: ModuleNotFoundError: the Python package " \
           "'sd_webui_test_no_such_module' is not installed" in message and "other.py" in message


def test_a_missing_package_is_one_line_without_the_installer_too(tmp_path):
    """--skip-install (or an installer that did not fail): adetailer's ``import ultralytics`` is one line naming
    the package; an extension's own bug keeps its traceback."""
    scripts = tmp_path / "extensions" / "skipped" / "scripts"
    scripts.mkdir(parents=True)
    ext = ext_mod.Extension(name="skipped", path=scripts.parent)
    (scripts / "a_needs.py").write_text("from sd_webui_test_absent.models import YOLO\n", encoding="utf-8")
    (scripts / "b_buggy.py").write_text("undefined_name + 1\n", encoding="utf-8")
    ext_mod.load_scripts([ext])
    assert ext.errors[0] == "a_needs.py raised at import: ModuleNotFoundError: the Python package " \
                            "'sd_webui_test_absent' is not installed"
    assert ext.errors[1].startswith("b_buggy.py raised at import:\nTraceback") and "NameError" in ext.errors[1]


def _wheel(folder: Path, name: str, version: str, extras: dict[str, list[str]]) -> Path:
    """A minimal pure-Python wheel whose extras need ``extras[extra]`` (pip installs it from a local folder)."""
    import zipfile

    module, info = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    for extra, needs in extras.items():
        metadata.append(f"Provides-Extra: {extra}")
        metadata += [f'Requires-Dist: {need}; extra == "{extra}"' for need in needs]
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n", f"{info}/METADATA": "\n".join(metadata) + "\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_a_requirement_whose_extra_needs_a_pinned_package_installs_without_that_extra(tmp_path, monkeypatch):
    """dynamic-prompts asks for dynamicprompts[attentiongrabber,magicprompt]; magicprompt wants transformers<5.
    The package itself works beside our transformers: it is installed without that extra and the installer run
    again finds it, with a note saying what was left out (also at the next start, when install.py is not run)."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    major = PROTECTED_NOW["numpy"].split(".")[0]
    _wheel(wheels, "probe-extras", "1.0", {"heavy": [f"numpy<{major}"], "light": []})
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing is fetched: the local wheel, our constraints
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_TARGET", str(target))  # installed beside the venv, not into it
    ext = extension(tmp_path, "wants-extras", f"""
        import subprocess, sys
        sys.path.insert(0, {str(target)!r})
        try:
            import probe_extras
            open("found.txt", "w").write(probe_extras.VERSION)
        except ImportError:
            subprocess.run([sys.executable, "-m", "pip", "install", "probe-extras[heavy,light]==1.0"], check=True)
    """)
    run(tmp_path, ext)
    assert ext.errors == [] and not ext.install_failed
    assert (ext.path / "found.txt").read_text() == "1.0"  # the second run of install.py found it
    assert ext.notes == [f"probe-extras installed without its heavy extra (numpy<{major} "
                         "cannot be had beside this app's packages)"]
    again = ext_mod.Extension(name="wants-extras", path=ext.path)
    run(tmp_path, again)
    assert again.notes == ext.notes and again.errors == []


def test_an_installer_that_failed_before_another_changed_the_packages_runs_again_in_the_same_start(
        tmp_path, monkeypatch):
    """What a later installer installs may be what an earlier one lacked: the earlier one runs once more in this
    start. One that still fails is recorded against the packages as they are at the end, so the next start does not
    run it again (a resolver run can take a minute) for a change made during this one."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))  # distributions written here count as installed
    probe = site / "probe_dist-1.0.dist-info"
    needs = extension(tmp_path, "a-needs-probe", f"""
        import os
        open("runs.txt", "a").write("x")
        if not os.path.exists({str(probe / "METADATA")!r}):
            raise RuntimeError("needs probe-dist")
    """)
    never = extension(tmp_path, "b-never-fits", """
        open("runs.txt", "a").write("x")
        raise RuntimeError("needs something nobody brings")
    """)
    brings = extension(tmp_path, "c-brings-probe", f"""
        import os
        os.makedirs({str(probe)!r}, exist_ok=True)
        open(os.path.join({str(probe)!r}, "METADATA"), "w").write("Metadata-Version: 2.1\\nName: probe-dist\\n"
                                                                 "Version: 1.0\\n")
    """)
    run(tmp_path, needs, never, brings)
    assert needs.errors == [] and not needs.install_failed and (needs.path / "runs.txt").read_text() == "xx"
    assert never.install_failed and (never.path / "runs.txt").read_text() == "xx"
    again = [ext_mod.Extension(name=e.name, path=e.path) for e in (needs, never, brings)]
    run(tmp_path, *again)
    assert (never.path / "runs.txt").read_text() == "xx" and "not run again" in again[1].errors[0]
    assert (needs.path / "runs.txt").read_text() == "xx" and again[0].errors == []


def test_scripts_missing_the_same_package_share_one_line(tmp_path):
    """regional-prompter's three scripts each import torchvision: one line names the package and the scripts."""
    folder = tmp_path / "extensions" / "three-scripts" / "scripts"
    folder.mkdir(parents=True)
    for name in ("a.py", "b.py", "c.py"):
        (folder / name).write_text("import surely_not_installed_pkg_xyz.sub\n", encoding="utf-8")
    ext = ext_mod.Extension(name="three-scripts", path=folder.parent)
    ext_mod.load_scripts([ext])
    assert ext.errors == ["a.py, b.py, c.py raised at import: ModuleNotFoundError: the Python package "
                          "'surely_not_installed_pkg_xyz' is not installed"]
