"""fakelib: spot GAN-made faces and teach people to spot them."""

__version__ = "0.1.0"
