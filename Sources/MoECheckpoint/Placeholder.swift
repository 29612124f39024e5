enum CheckpointPlaceholder {}
