"""Walk-forward evaluation: train on each window's train span, test on the unseen span after it, compare with
baselines through the same env, and report agent-minus-baseline intervals over windows and seeds.

    python -m train.walkforward [CONFIG.yaml ...] [group.key=value ...]     # --help lists every key

Modules: `config` (the `walkforward` and `sweep` key groups), `windows` (spans), `bundles` (each window's envs,
features fitted on its train span), `program` (`train_agents`: windows x sweep points x seeds trained in one jitted
program), `sweep` (the grid and its selection on the validation tail), `agents` (the trained `Agents`, the
deterministic policies' episodes), `episodes` and `baselines` (fixed-action episodes through the env), `stats`
(hierarchical bootstrap, IQM), `report` and `plots` (walkforward.json / .md, figures), `run` (orchestration and the
command line).
"""

from train.walkforward.run import main, run_walkforward

__all__ = ["main", "run_walkforward"]
