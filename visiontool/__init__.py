"""visiontool: classify, train and export convolutional networks from the command line."""

__version__ = "0.1.0"
