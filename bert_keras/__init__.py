"""bertpipe's Keras 3 BERT library (backend-agnostic: TensorFlow, JAX or torch).

* `bert_keras.backbone`: `ConfigurableBertBackbone`, KerasHub's BertBackbone with the
  activation (exact GELU) and layer-norm epsilon as config.
* `bert_keras.checkpoint`: `resolve_checkpoint`, `load_backbone` (Hugging Face BERT dirs and
  bertpipe encoder checkpoints), `save_encoder_checkpoint`.
* `bert_keras.classifier`: `build_text_classifier` (logits on the pooled output).
* `bert_keras.token_classifier`: `BertTokenClassifier`, `build_token_classifier` (per-token
  logits on the sequence output) and the masked `token_classification_loss`.
* `bert_keras.pretrainer`: `BertPretrainer` (tied masked-LM head + next-sentence head) and
  its losses, metrics and `split_pretraining_features`.
* `bert_keras.optimization`: `LinearWarmupDecay`, `build_adamw`.

Import the modules themselves; this package module imports nothing, so that importing
`bert_keras` stays cheap.
"""
