"""Lightning pretraining (``python -m dnadiff.pretrain``): the config, the LightningModule, optimiser,
EMA, atomic checkpoint I/O and the run itself."""
