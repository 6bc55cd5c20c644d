"""``python -m dnadiff.finetune``: fine-tune a backbone on Genomic Benchmarks, by K-fold CV or the papers' protocol.

    python -m dnadiff.finetune task=NAME [ckpt=PATH] [model=NAME] [data.root=PATH] [cv.protocol=kfold|seeds]
        [cv.folds=5] [cv.seeds=N] [trainer.max_epochs=N] [out_dir=PATH] [baseline=true|false] [save_classifier=DIR]

Writes ``out_dir/<task>/cv.json`` and ``cv.md`` (see :mod:`dnadiff.finetuning.run`); ``--help``
lists every option of ``configs/finetune.yaml``.

Protocols (:mod:`dnadiff.finetuning.cv`): ``cv.protocol=kfold`` (default) is true stratified K-fold
cross-validation; ``cv.protocol=seeds`` is the protocol of the Caduceus (Table 1) and MDLM (Table 7)
Genomic Benchmarks tables: 5 seeds of a random 90/10 train/validation split of the official train
split, the best-validation epoch, accuracy on the official test split. Each output says which ran
(``protocol``, ``split_used``, the ``[protocol ...]`` of the summary line), and what was done
instead when the data on disk has no train split.

Class labels: label i is the i-th class folder name in sorted order (``class_names`` in
cv.json). The genomic-benchmarks package (and the Caduceus code) number classes in directory
listing order (``Path.iterdir()``), which the file system decides (ext4 lists in hash order), so
for any of the 9 tasks their label 0 may be the other class (or, for human_ensembl_regulatory, any
of the three). Accuracy, MCC, macro F1 and AUROC do not depend on the numbering; per-class outputs
(a saved classifier's class indices, the package's binary F1 of "class 1") do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dnadiff.cli import entry_point
from dnadiff.config import to_typed
from dnadiff.finetuning.config import FinetuneConfig

PROG = "python -m dnadiff.finetune"


def finetune(cfg: FinetuneConfig | Mapping[str, Any]) -> list[dict]:
    """Run the cross-validation as configured (a FinetuneConfig or a mapping of its keys)."""
    from dnadiff.finetuning.run import run

    return run(to_typed(cfg, FinetuneConfig))


main = entry_point("finetune", finetune, PROG)

if __name__ == "__main__":
    main()
