"""Post-run tools: what is done with finished runs, above training.

restore.py        a finished run's classifier, loaded back through the model table
saliency.py       Grad-CAM and integrated-gradient maps of a run's test images
robustness.py     accuracy and AUC of runs under image noise and lower resolution
seed_ensemble.py  the ensemble (mean probability) of several seeds' finished runs

`medjax.train` never imports this package; `medjax.eval` holds the metrics both use.
"""
