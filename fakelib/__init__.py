"""fakelib: spot GAN-made faces and teach people to spot them."""

import os

# TensorFlow's C++ start-up chatter (oneDNN notices, absl warnings) buries the output researchers need;
# a user who wants it back sets TF_CPP_MIN_LOG_LEVEL themselves, which this leaves alone.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
