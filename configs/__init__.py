"""Experiment configs shipped with jaxvad (installed as `jaxvad.configs`); list them with `jaxvad train --list-configs`."""
