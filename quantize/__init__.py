"""Workstation side: ISIC data, CancerNet-SCa architectures, training, int8 calibration, conversion, reports."""
