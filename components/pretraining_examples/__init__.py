"""PretrainingExampleGen: BERT masked-LM / next-sentence pretraining examples on Beam.

`component` and `executor` import TFX; `pretraining_data` holds the data logic and does not.
"""
