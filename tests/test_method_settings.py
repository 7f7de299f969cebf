"""Each attack and defense owns its settings: a config section holds the shared fields and the named method's own
settings, written in full; another method's setting is refused with the method's own list; a run saved in the
older layout (every method's settings in one section) is still recognised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from poison2poison.bench import load_grid
from poison2poison.config import in_todays_layout, load_config, validated_config
from poison2poison.defenses.p2p import RobustP2PSettings
from poison2poison.errors import ConfigError, RunDirError
from poison2poison.rundir import claim_run_dir


def test_a_section_holds_its_methods_settings_in_full_and_no_others() -> None:
    config = load_config(None, ["attack.name=badnets", "attack.num_triggers=3", "defense.name=strip"])
    attack, defense = config.model_dump()["attack"], config.model_dump()["defense"]
    assert attack["num_triggers"] == 3 and attack["triggers"] == ["cf", "mn", "bb", "tq", "mb"]
    assert "sentence" not in attack and "multiplier" not in attack
    assert {"strip_copies", "strip_swap", "strip_frr"} <= set(defense) and "dece_smoothing" not in defense
    assert config.defense.settings.strip_copies == 10 and config.defense.trusted_size == 200  # STRIP's own default
    assert load_config(None, ["defense.name=strip", "defense.trusted_size=50"]).defense.trusted_size == 50


def test_a_setting_of_another_method_is_refused_with_the_methods_own_list() -> None:
    with pytest.raises(ConfigError, match=r"defense: 'dece_smoothing' is not a setting of defense 'p2p' "
                                          r"\(its own settings: none\)"):
        load_config(None, ["defense.name=p2p", "defense.dece_smoothing=0.1"])
    with pytest.raises(ConfigError, match=r"'sentence' is not a setting of attack 'badnets' "
                                          r"\(its own settings: triggers, num_triggers\)"):
        load_config(None, ["attack.name=badnets", "attack.sentence=hello"])
    with pytest.raises(ConfigError, match=r"attack: setting 'num_triggers': Input should be greater than or equal to 1"):
        load_config(None, ["attack.num_triggers=0"])
    with pytest.raises(ConfigError, match="onion_epochs 0 keeps the scorer as it is"):
        load_config(None, ["defense.name=onion", "defense.onion_epochs=0"])


def test_p2p_plus_gives_its_defaults_and_a_setting_in_the_config_wins() -> None:
    robust = load_config(None, ["defense.name=p2p+"]).defense
    assert {key: getattr(robust, key) for key in RobustP2PSettings.section_defaults} == RobustP2PSettings.section_defaults
    assert load_config(None, ["defense.name=p2p+", "defense.drop_suspicious=0"]).defense.drop_suspicious == 0
    assert load_config(None, ["defense.name=p2p"]).defense.drop_suspicious == 0  # the paper's method keeps its own


def test_a_benign_head_other_than_the_methods_own_is_named_in_the_variant() -> None:
    def variant(*overrides: str) -> str:
        return load_config(None, list(overrides)).defense.variant

    assert "head" not in variant("defense.name=p2p+") and "head" not in variant("defense.name=p2p")
    assert variant("defense.name=p2p+", "defense.benign_head=random").endswith("random head)")
    assert variant("defense.name=p2p", "defense.benign_head=plain") == "p2p(random, plain head)"


def test_a_run_saved_in_the_older_layout_is_recognised_as_todays_run(tmp_path: Path) -> None:
    """Configs once held every method's settings in one section: the foreign ones never reached the run, and a null
    meant the method's default, so the folder holds today's run and is skipped, not refused or retrained."""
    hashes = {"poisoned_train": "p", "clean_test": "c", "triggered_test": "t"}
    (tmp_path / "metrics.json").write_text(json.dumps({"data_hashes": hashes}))
    for overrides, older_fields in [
        (["defense.name=p2p"], {"attack": {"sentence": "I watched this 3D movie", "multiplier": 2.1},
                                "defense": {"dece_smoothing": 0.05, "strip_copies": 10, "cube_components": 10}}),
        (["data.dataset=samsum", "attack.name=phrase"], {"attack": {"trigger": None, "target_text": None,
                                                                     "triggers": ["cf"], "num_triggers": 1}}),
    ]:
        today = load_config(None, overrides)
        older = today.model_dump(mode="json")
        for section, fields in older_fields.items():
            older[section].update(fields)
        assert validated_config(in_todays_layout(older), "saved").model_dump() == today.model_dump()
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(older))
        assert claim_run_dir(tmp_path, today, hashes, "metrics.json") == {"data_hashes": hashes}  # finished: skipped
        other = load_config(None, [*overrides, "seed=1"])
        with pytest.raises(RunDirError, match="its config differs"):
            claim_run_dir(tmp_path, other, hashes, "metrics.json")


def test_every_packaged_config_and_grid_gives_each_method_only_its_own_settings() -> None:
    root = Path(__file__).resolve().parents[1]
    configs = sorted((root / "src" / "poison2poison" / "configs").rglob("*.yaml"))
    grids = sorted((root / "benchmarks" / "grids").glob("*.yaml"))
    assert configs and grids
    for path in configs:
        load_config(path)
    for path in grids:
        assert load_grid(path)
