"""Fine-tuning the embedding model on (question or ayah text, tafsir) pairs, with the seed model's recipe.

``training.pairs`` reads pairs files and derives pairs from a corpus (pure, no model weights);
``training.train`` runs sentence-transformers' trainer and evaluates retrieval before and after.
Nothing heavy is imported here: ``tafsir`` commands that do not train never load the trainer.
"""
