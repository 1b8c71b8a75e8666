"""Studies on a cluster: the workers of one study as a SLURM job array (slurm.py) or a Kubernetes Indexed Job
(k8s.py), on a storage every node reaches (shared.py). The study is made once before any worker starts
(study.runner.create_for_workers); each worker is `python -m core study` on it."""
