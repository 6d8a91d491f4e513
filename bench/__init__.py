"""Benchmarks of jaxvad against PyTorch.

The scripts in this folder run as `python bench/NAME.py`; `bench.torch_baselines` is a package
(the PyTorch implementations of jaxvad's models), imported from the repository root.
"""
