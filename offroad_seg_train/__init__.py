"""offroad-seg training: dataset reader, augmentations, LightningModule,
DataModule, CLI, export and the synthetic desert generator."""
