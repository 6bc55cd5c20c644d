"""Non-language-model baselines trained on the same folds as the fine-tuned backbones."""
