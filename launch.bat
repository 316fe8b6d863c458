@echo off
rem One-click launcher (Windows): find Python, make the venv, install requirements when they changed, start webui.py.
rem
rem Settings come from the environment, or from the "set NAME=VALUE" lines of webui-user.bat next to this file:
rem   PYTHON            interpreter (default: the first of py -3.11, py -3.10, py -3.12, python3.11, python3.10,
rem                     python3.12, python3, python that is Python 3.10 or newer)
rem   VENV_DIR          venv folder (default: venv next to this file); "-" = use PYTHON as is, no venv
rem   COMMANDLINE_ARGS  extra flags; webui.py reads them itself, this script only looks for its own:
rem                     --skip-install, --reinstall-torch, --exit
rem   TORCH_COMMAND     pip arguments for torch, run as "python -m TORCH_COMMAND" (A1111's format)
rem   TORCH_INDEX_URL   wheel index for torch; default with an NVIDIA GPU: https://download.pytorch.org/whl/cu128
rem                     (then cu130, then cu126 if that index lacks the pinned version; cu126 first for GPUs older
rem                     than compute capability 7.0, which the newer CUDA builds no longer support)
rem   REQS_FILE         requirements file (default: requirements.txt)
rem Packages are installed only when the sha256 of the requirements file differs from VENV_DIR\.requirements.sha256.
rem Written with goto rather than ( ) blocks: a ")" inside an expanded path such as "Program Files (x86)" would end a
rem block early.

setlocal EnableExtensions
set "ROOT=%~dp0"
cd /d "%ROOT%"

if not exist "%ROOT%webui-user.bat" goto :user_done
rem Only its "set" lines: A1111's webui-user.bat ends by calling webui.bat, which this program does not have.
for /f "usebackq delims=" %%L in (`findstr /r /i /c:"^ *set " "%ROOT%webui-user.bat"`) do %%L
:user_done

if not defined REQS_FILE set "REQS_FILE=requirements.txt"
if not defined NODEPS_FILE set "NODEPS_FILE=requirements-nodeps.txt"
set "SKIP_INSTALL="
set "REINSTALL_TORCH="
set "EXIT_AFTER="
for %%A in (%* %COMMANDLINE_ARGS%) do (
    if /i "%%~A"=="--skip-install" set "SKIP_INSTALL=1"
    if /i "%%~A"=="--reinstall-torch" set "REINSTALL_TORCH=1"
    if /i "%%~A"=="--exit" set "EXIT_AFTER=1"
)

rem ---- Python ------------------------------------------------------------------------------------------------------
set "PY_CMD="
if not defined PYTHON goto :find_python
set "PY_TRY=%PYTHON%"
call :probe
if errorlevel 1 goto :python_bad
goto :python_done

:find_python
for %%P in ("py -3.11" "py -3.10" "py -3.12" "python3.11" "python3.10" "python3.12" "python3" "python") do (
    if not defined PY_CMD (
        set "PY_TRY=%%~P"
        call :probe
    )
)
if defined PY_CMD goto :python_done
echo launch.bat: Python 3.10 or newer was not found.
echo Install Python 3.11 from python.org and tick "Add python.exe to PATH", or set PYTHON to its python.exe in webui-user.bat.
goto :fail

:python_bad
echo launch.bat: PYTHON=%PYTHON% does not run, or is older than Python 3.10; Python 3.10 or newer is required. It says:
%PYTHON% --version
goto :fail

:python_done

rem ---- venv --------------------------------------------------------------------------------------------------------
if not defined VENV_DIR set "VENV_DIR=%ROOT%venv"
if "%VENV_DIR%"=="-" goto :no_venv
if exist "%VENV_DIR%\Scripts\python.exe" goto :venv_exists
echo Creating venv in %VENV_DIR% with %PY_CMD%
%PY_CMD% -m venv "%VENV_DIR%"
if errorlevel 1 goto :venv_failed
:venv_exists
set PY="%VENV_DIR%\Scripts\python.exe"
set "STAMP_DIR=%VENV_DIR%"
%PY% -c "import sys; sys.exit(sys.version_info < (3, 10))" >nul 2>&1
if errorlevel 1 goto :venv_old
goto :venv_done

:no_venv
rem No venv of our own: keep the stamp in the interpreter's prefix (if it is not writable, we install every time).
set "PY=%PY_CMD%"
set "STAMP_DIR="
set "PREFIX_FILE=%TEMP%\sdwebui-prefix-%RANDOM%.txt"
%PY% -c "import sys; print(sys.prefix)" > "%PREFIX_FILE%" 2>nul
set /p STAMP_DIR=<"%PREFIX_FILE%"
del "%PREFIX_FILE%" >nul 2>&1
:venv_done

rem ---- packages ----------------------------------------------------------------------------------------------------
if not defined SKIP_INSTALL goto :check_reqs
echo Skipping package installation because of --skip-install
goto :install_done

:check_reqs
if not exist "%REQS_FILE%" goto :no_reqs
if not defined STAMP_DIR goto :install
if defined REINSTALL_TORCH goto :install
%PY% -c "import hashlib, sys, pathlib; h = hashlib.sha256(b''.join(pathlib.Path(f).read_bytes() for f in sys.argv[1:3] if pathlib.Path(f).is_file())).hexdigest(); s = pathlib.Path(sys.argv[3]); sys.exit(0 if s.is_file() and s.read_text().strip() == h else 1)" "%REQS_FILE%" "%NODEPS_FILE%" "%STAMP_DIR%\.requirements.sha256"
if errorlevel 1 goto :install
echo Requirements unchanged since the last install
goto :install_done

:install
%PY% -m pip --version >nul 2>&1
if errorlevel 1 goto :no_pip
rem torch is pinned in requirements.txt: install exactly that first, then everything else constrained to it, so no
rem dependency can pull a different torch build.
set "TORCH_SPEC="
for /f "usebackq tokens=1 delims=;# " %%T in (`findstr /r /i /c:"^ *torch *==" "%REQS_FILE%"`) do if not defined TORCH_SPEC set "TORCH_SPEC=%%T"
if not defined TORCH_SPEC set "TORCH_SPEC=torch==2.13.0"
for /f "tokens=2 delims==" %%V in ("%TORCH_SPEC%") do set "TORCH_VERSION=%%V"

if defined REINSTALL_TORCH goto :torch_install
%PY% -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('torch').split('+')[0] == sys.argv[1] else 1)" %TORCH_VERSION% >nul 2>&1
if not errorlevel 1 goto :torch_done

:torch_install
if defined REINSTALL_TORCH %PY% -m pip uninstall -y torch
if defined TORCH_COMMAND goto :torch_command
where nvidia-smi >nul 2>&1
if errorlevel 1 goto :torch_registry
if defined TORCH_INDEX_URL goto :torch_user_index

rem An NVIDIA GPU: the registry's Windows torch is CPU-only, so take PyTorch's CUDA build, as A1111 does.
set "CUDA_ORDER=cu128 cu130 cu126"
set "GPU_CC=none"
nvidia-smi --query-gpu=compute_cap --format=csv,noheader > "%TEMP%\sdwebui-cc.txt" 2>nul
set /p GPU_CC=<"%TEMP%\sdwebui-cc.txt"
del "%TEMP%\sdwebui-cc.txt" >nul 2>&1
rem Compare the first two characters as strings: old drivers print an error text here, which must not break an IF.
set "GPU_CC2=%GPU_CC:~0,2%"
for %%O in (3. 5. 6.) do if "%GPU_CC2%"=="%%O" set "CUDA_ORDER=cu126 cu128 cu130"
set "TORCH_OK="
for %%C in (%CUDA_ORDER%) do if not defined TORCH_OK call :torch_from_index https://download.pytorch.org/whl/%%C
if defined TORCH_OK goto :torch_done
goto :torch_failed

:torch_user_index
set "TORCH_OK="
call :torch_from_index %TORCH_INDEX_URL%
if defined TORCH_OK goto :torch_done
goto :torch_failed

:torch_command
echo Installing torch: python -m %TORCH_COMMAND%
%PY% -m %TORCH_COMMAND%
if errorlevel 1 goto :torch_failed
goto :torch_done

:torch_registry
echo Installing %TORCH_SPEC%
%PY% -m pip install %TORCH_SPEC%
if errorlevel 1 goto :torch_failed

:torch_done
set "CONSTRAINTS=%TEMP%\sdwebui-torch-constraints-%RANDOM%.txt"
> "%CONSTRAINTS%" echo %TORCH_SPEC%
echo Installing requirements from %REQS_FILE%
%PY% -m pip install -r "%REQS_FILE%" -c "%CONSTRAINTS%"
set "PIP_RC=%errorlevel%"
del "%CONSTRAINTS%" >nul 2>&1
if not "%PIP_RC%"=="0" goto :reqs_failed
rem Packages whose declared dependencies must not be installed (spandrel's torchvision: see the file).
if not exist "%NODEPS_FILE%" goto :nodeps_done
echo Installing %NODEPS_FILE% without dependencies
%PY% -m pip install --no-deps -r "%NODEPS_FILE%"
if errorlevel 1 goto :reqs_failed
:nodeps_done
if not defined STAMP_DIR goto :install_done
%PY% -c "import hashlib, sys, pathlib; pathlib.Path(sys.argv[3]).write_text(hashlib.sha256(b''.join(pathlib.Path(f).read_bytes() for f in sys.argv[1:3] if pathlib.Path(f).is_file())).hexdigest() + '\n')" "%REQS_FILE%" "%NODEPS_FILE%" "%STAMP_DIR%\.requirements.sha256" 2>nul

:install_done
if not defined EXIT_AFTER goto :start
echo Exiting because of --exit argument
exit /b 0

:start
%PY% "%ROOT%webui.py" %*
set "RC=%errorlevel%"
if "%RC%"=="0" exit /b 0
echo.
echo webui.py exited with code %RC%.
pause
exit /b %RC%

rem ---- subroutines and errors --------------------------------------------------------------------------------------
:probe
rem Sets PY_CMD to PY_TRY when that command runs Python 3.10 or newer.
%PY_TRY% -c "import sys; sys.exit(sys.version_info < (3, 10))" >nul 2>&1
if errorlevel 1 exit /b 1
set "PY_CMD=%PY_TRY%"
exit /b 0

:torch_from_index
echo Installing %TORCH_SPEC% from %~1
%PY% -m pip install %TORCH_SPEC% --index-url %~1
if errorlevel 1 (
    echo %~1 has no usable %TORCH_SPEC% for this machine
    exit /b 1
)
set "TORCH_OK=1"
exit /b 0

:venv_failed
echo launch.bat: could not create a venv in %VENV_DIR%
goto :fail

:venv_old
echo launch.bat: the venv in %VENV_DIR% does not run or is older than Python 3.10; delete that folder and run launch.bat again
goto :fail

:no_reqs
echo launch.bat: %REQS_FILE% not found in %ROOT%
goto :fail

:no_pip
echo launch.bat: pip is missing in %PY%
goto :fail

:torch_failed
echo launch.bat: could not install torch; set TORCH_COMMAND or TORCH_INDEX_URL in webui-user.bat, or use --skip-install
goto :fail

:reqs_failed
echo launch.bat: could not install the requirements; fix the error above and run launch.bat again
goto :fail

:fail
echo.
echo Launch unsuccessful. Exiting.
pause
exit /b 1
