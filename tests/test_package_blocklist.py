"""Known-malicious package releases (campaign D32): an extension whose install.py or requirements pin one never has
its installer run, and an installed one is reported at start with what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

from modules import extensions as ext_mod
from modules import package_blocklist

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "extensions_blocked" / "miner-ext"


def test_pins_are_found_in_requirements_and_scripts():
    text = "numpy>=1\nUltralytics == 8.3.41  # pinned\nultralytics==8.3.40\ntorch_triton==3.0.0\n"
    found = package_blocklist.pinned_in(text)
    assert found == ["ultralytics==8.3.41 is blocked: these releases were published with a cryptominer (December "
                     "2024); install 8.3.40 or 8.3.47+"]
    assert package_blocklist.pinned_in('pip install "torchtriton==3.0.0"')[0].startswith("torchtriton==3.0.0")
    assert package_blocklist.pinned_in("ultralytics==8.3.410") == []


def test_an_installer_pinning_a_blocked_release_is_never_run(tmp_path):
    root = tmp_path / "extensions"
    shutil.copytree(FIXTURE, root / "miner-ext")
    found = ext_mod.discover(tmp_path, {})
    ext_mod.run_installers(found, tmp_path)
    assert not (root / "miner-ext" / "ran.txt").exists()
    assert "not run" in found[0].errors[0] and "ultralytics==8.3.41" in found[0].errors[0]


def test_installed_blocked_releases_are_reported(monkeypatch):
    versions = {"ultralytics": "8.3.42"}

    def version(name):
        if name not in versions:
            raise package_blocklist.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(package_blocklist.metadata, "version", version)
    assert package_blocklist.installed_problems() == [
        "installed ultralytics==8.3.42 is blocked: these releases were published with a cryptominer (December "
        "2024); install 8.3.40 or 8.3.47+"]
    versions["ultralytics"] = "8.3.47"
    assert package_blocklist.installed_problems() == []
