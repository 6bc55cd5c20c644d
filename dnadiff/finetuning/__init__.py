"""Fine-tuning with cross-validation on Genomic Benchmarks (``python -m dnadiff.finetune``): the
config, stratified deduplicated folds, the per-fold fit with epoch selection, the CV runner
(backbones and the CNN baseline on the same splits) and the written report."""
