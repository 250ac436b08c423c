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
