"""The regression study (studies/diabetes.yaml) against scikit-learn's regressors on the same diabetes split.

The study's trials train on 80% of the training part (the rest is their validation part) and its best trial is
chosen on validation RMSE; RidgeCV and HistGradientBoostingRegressor train on the whole training part. All are
scored on the same fixed test part (core.data keeps 20% of the table aside with seed 0), in the target's units.
`python -m benchmarks.regression [--quick]` runs it alone.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.table import Row, main_for

SPEC = Path(__file__).resolve().parents[1] / "studies" / "diabetes.yaml"


def diabetes_parts():
    """(x_train, y_train, x_test, y_test) as the study's runs see them (before their own validation split)."""
    from core.config import DataConfig
    from core.data import load_dataset

    data = load_dataset(DataConfig(name="experiments.diabetes:load"))
    return data.train_x.numpy(), data.train_y.numpy(), data.test_x.numpy(), data.test_y.numpy()


def classical_rmse() -> dict[str, float]:
    """Test RMSE of RidgeCV (standardised features, its own alpha search) and HistGradientBoostingRegressor."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, x_test, y_test = diabetes_parts()
    models = {"RidgeCV": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))),
              "HistGradientBoostingRegressor": HistGradientBoostingRegressor(random_state=0)}
    return {name: float(np.sqrt(np.mean((model.fit(x_train, y_train).predict(x_test) - y_test) ** 2)))
            for name, model in models.items()}


def study_test_rmse(trials: int) -> tuple[float, float, int]:
    """(the best trial's test RMSE, its validation RMSE, its number), in a store of its own."""
    from benchmarks.study import temporary_store
    from core.names import logged_summary
    from core.study import load_spec, run_study
    from core.tracking import mlflow_store

    spec = load_spec(SPEC, ("track.visdom=off",), trials=trials)
    with temporary_store():
        outcome = run_study(spec)
        metrics = mlflow_store.client().get_run(outcome.best_run_id).data.metrics
        return logged_summary(metrics, "test_rmse"), logged_summary(metrics, "final_val_rmse"), outcome.best_trial


def run(quick: bool = False) -> list[Row]:
    trials = 12 if quick else 30
    study, validation, number = study_test_rmse(trials)
    scores = classical_rmse()
    ratio = study / scores["RidgeCV"]
    return [Row(f"diabetes regression study ({trials} trials) vs RidgeCV: best trial's test RMSE (lower is better)",
                ratio, "<= 1.05", ratio <= 1.05,
                f"study {study:.2f} (trial {number}, val {validation:.2f}), RidgeCV {scores['RidgeCV']:.2f}, "
                f"HistGradientBoostingRegressor {scores['HistGradientBoostingRegressor']:.2f} (same training and "
                f"test parts)")]


if __name__ == "__main__":
    main_for(run)
