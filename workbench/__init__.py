"""The research workbench, never shipped in the extension: procedural data (``data``), the
training/validation/evaluation splits and the committed eval set, training of the demo weights
(``train``), the benchmark baselines and experiments. It imports the runtime ``backend``;
``backend`` never imports it.
"""
