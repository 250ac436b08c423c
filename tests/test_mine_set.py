"""`mer-ray mine --set KEY=VALUE`: any config field by its dotted name (docs/mining.md), the value
read as YAML and applied after the flags; the pipeline itself is not started (it is replaced by
a function that keeps the resolved config), so this needs no Ray."""
import pytest
import yaml

import mer_ray.mining.run as run
from mer_ray.jobs import mine


@pytest.fixture
def resolved(monkeypatch):
    seen = {}
    monkeypatch.setattr(run, "run_cyclic_mining", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    return seen


def test_set_reaches_nested_policy_options_and_tuple_fields(tmp_path, resolved):
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"mining": {"options": {"cap": {"max_share_per_round": 0.5}}}}))
    assert mine.main(["--config", str(config), "--rounds", "1", "--set", "mining.options.vote.agree=4",
                      "--set", "mining.policy=[vote, cap]", "--set", "mining.options.cap.max_share_per_class=0.4",
                      "--set", "mining.rounds=2"]) == 0
    cfg = resolved["cfg"]
    assert cfg.mining.policy == ("vote", "cap")          # a tuple, as a --config file builds it
    assert cfg.mining.options == {"vote": {"agree": 4}, "cap": {"max_share_per_round": 0.5, "max_share_per_class": 0.4}}
    assert cfg.mining.rounds == 2                        # --set is applied after --rounds


def test_set_refuses_old_names_and_a_missing_value(resolved, capsys):
    with pytest.raises(ValueError, match="mining.options.vote.agree"):
        mine.main(["--set", "mining.agree=4"])
    with pytest.raises(SystemExit):
        mine.main(["--set", "rounds"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert "cfg" not in resolved
