"""Your own code: models, data loaders and metrics that specs name by import path (module:function)."""
