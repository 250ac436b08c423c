"""Every `python jobs/<script>.py` has its `mer-ray COMMAND` in the installed package (a job
only in jobs/ fails from a wheel), and each script is the thin wrapper of that command's main."""
import ast
from pathlib import Path

from mer_ray.jobs import load_all

REPO = Path(__file__).resolve().parents[1]


def test_every_job_script_wraps_a_registered_command():
    jobs = load_all()
    scripts = {jobs.meta(name)["script"]: name for name in jobs.names()}
    assert {"faces", "mine", "extract", "tune"} <= set(jobs.names())
    assert sorted(scripts) == sorted(p.name for p in (REPO / "jobs").glob("*.py"))
    for script, name in scripts.items():
        module = jobs.get(name).__module__
        imports = [n for n in ast.walk(ast.parse((REPO / "jobs" / script).read_text()))
                   if isinstance(n, ast.ImportFrom) and n.module == module]
        assert imports, f"jobs/{script} does not import main from {module}"


def test_a_jobs_help_prints_without_importing_ray_or_torch():
    import subprocess
    import sys

    # a fresh interpreter: this test process has Ray imported already
    probe = ("import sys\nfrom mer_ray.cli import main\ntry:\n    main(['mine', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('ray', 'torch', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "usage: mer-ray mine" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-300:]
