"""bootdistill: cheaper pre-training by distilling from small teachers, with every FLOP counted."""

__version__ = "0.1.0"
