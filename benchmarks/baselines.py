"""The default study against scikit-learn's classical baselines on the same digits split.

The study's trials train on 80% of the training part (the rest is their validation part) and its best trial is
chosen on validation accuracy; SVC and MLPClassifier train on the whole training part. All three are scored on
the same fixed test part (core.data keeps a stratified 20% of digits aside with seed 0).
`python -m benchmarks.baselines [--quick]` runs the studies itself; `python -m benchmarks` reuses the
pruned studies of benchmarks.study.
"""

from __future__ import annotations

import statistics

from benchmarks.table import Row, main_for


def digits_parts():
    """(x_train, y_train, x_test, y_test) of the default study's data set as the study sees it, flattened."""
    from core.config import DataConfig
    from core.data import load_dataset

    data = load_dataset(DataConfig(name="digits"))
    flat = lambda x: x.reshape(len(x), -1).numpy() / 255.0  # noqa: E731
    return flat(data.train_x), data.train_y.numpy(), flat(data.test_x), data.test_y.numpy()


def classical_scores() -> dict[str, float]:
    """Test accuracy of scikit-learn's SVC and MLPClassifier (defaults, standardised features)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x_train, y_train, x_test, y_test = digits_parts()
    models = {"SVC": SVC(), "MLPClassifier": MLPClassifier(max_iter=1000, random_state=0)}
    return {name: float(make_pipeline(StandardScaler(), model).fit(x_train, y_train).score(x_test, y_test))
            for name, model in models.items()}


def best_trial_test_accuracy(outcome) -> float:
    """The test accuracy logged on the best trial's run (read while the study's store is open)."""
    from core.names import logged_summary
    from core.tracking import mlflow_store

    return logged_summary(mlflow_store.client().get_run(outcome.best_run_id).data.metrics, "test_acc")


def baselines_row(study_accuracies: list[float], trials: int) -> Row:
    """The mean over study seeds of the best trial's test accuracy, per SVC's."""
    scores = classical_scores()
    study = statistics.mean(study_accuracies)
    ratio = study / scores["SVC"]
    per_seed = ", ".join(f"{value:.4f}" for value in study_accuracies)
    return Row(f"default study ({trials} trials, {len(study_accuracies)} seeds) vs SVC: best trial's test accuracy",
               ratio, ">= 1.00", study >= scores["SVC"],
               f"study {study:.4f} (per seed {per_seed}), SVC {scores['SVC']:.4f}, "
               f"MLPClassifier {scores['MLPClassifier']:.4f} (same training and test parts)")


def run(quick: bool = False) -> list[Row]:
    from benchmarks.study import run_default_study

    trials, seeds = (12, 2) if quick else (30, 5)
    accuracies = [run_default_study(trials, seed=seed)[1] for seed in range(seeds)]
    return [baselines_row(accuracies, trials)]


if __name__ == "__main__":
    main_for(run)
