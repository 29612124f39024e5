public enum MoETokenizerModule {}
