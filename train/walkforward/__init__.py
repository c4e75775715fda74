"""Walk-forward evaluation: train on each window's train span, test on the unseen span after it, compare with
baselines through the same env, and report agent-minus-baseline intervals over windows and seeds.

    python -m train.walkforward [CONFIG.yaml ...] [group.key=value ...]     # --help lists every key

Modules: `config` (the `walkforward` key group), `windows` (spans), `bundles` (each window's envs, features
fitted on its train span), `agents` (`train_agents`, the deterministic policies' episodes), `episodes` and
`baselines` (fixed-action episodes through the env), `stats` (hierarchical bootstrap, IQM), `report` and `plots`
(walkforward.json / .md, figures), `run` (orchestration and the command line).
"""

from train.walkforward.run import main, run_walkforward

__all__ = ["main", "run_walkforward"]
