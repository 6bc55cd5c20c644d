"""kill -9 of ``python -m dnadiff.pretrain`` inside checkpoint writes (issue 13 fault tests), the
small version of ``bench/faults.py`` (whose 20-trial figures are in bench/results/faults.json):
the last checkpoint always loads, ``resume=`` continues, the temporaries and stale locks that
the kills leave are cleaned up at the next start, and the killed-and-resumed run ends bit for bit
where an uninterrupted run ends (weights, EMA, optimiser state, schedule, training losses)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.train.test_pretrain import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_faults", REPO / "bench" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_kill9_during_checkpoint_writes(tmp_path: Path) -> None:
    faults = load_bench()
    trials = 2
    result = faults.kill_loop(tmp_path, trials=trials, seed=1, max_steps=10,
                              overrides=("model.d_model=32", "data.seq_len=64"))
    print(faults.table(result))
    assert all(t["exit_status"] == -9 and t["killed_during"] for t in result["per_trial"]), "a trial was not killed"
    assert result["checkpoint_losses"] == 0 and result["last_ckpt_loaded"] == trials
    assert result["final_exit_status"] == 0
    left = result["leftovers"]
    assert left["removed_at_next_start"] == left["starts_that_found_leftovers"]
    assert left["left_at_end"] == 0 and not left["lock_left_at_end"]
    assert left["stale_locks_left_by_kills"] == trials and left["stale_locks_taken_over"] == trials
    equal = result["final_equals_reference"]
    assert equal["step"] == [10, 10]
    assert equal["weights_and_ema_equal"] and equal["optimizer_state_equal"] and equal["lr_schedule_equal"]
    assert equal["max_abs_loss_difference"] in (0.0, None)
