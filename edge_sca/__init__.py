"""On-device runtime for CancerNet-SCa (numpy, OpenCV, LiteRT; never TensorFlow). Research tool, not a diagnosis."""

__version__ = "0.1.0"
