"""A1111's ``launch`` module. Extensions import it (``import launch; launch.run_pip(...)``), and
``python launch.py [flags]`` starts the web UI as A1111's does (``launch.sh``/``launch.bat`` also create the venv).
"""

from __future__ import annotations

from modules.launch_utils import (  # noqa: F401 - the names extensions use
    args,
    check_python_version,
    check_run_python,
    commit_hash,
    default_command_live,
    dir_repos,
    git,
    git_clone,
    git_tag,
    index_url,
    is_installed,
    prepare_environment,
    python,
    repo_dir,
    requirements_met,
    run,
    run_pip,
    script_path,
    skip_install,
    start,
)

if __name__ == "__main__":
    start()
