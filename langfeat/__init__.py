"""langfeat: a storage-centric database of language-specific SAE features and MLP neurons."""

__version__ = "0.1.0"
