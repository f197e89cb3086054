"""The logistic regression scores from its own per-feature terms: the same numbers sklearn's pipeline gives."""

import numpy as np
import pandas as pd

from models.baselines import LogisticBaseline


def test_logistic_terms_equal_the_fitted_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({
        "country": rng.choice(["DE", "FR", "US", "rare1", "rare2"], n, p=[0.4, 0.3, 0.29, 0.005, 0.005]),
        "industry": rng.choice(["a", "b", None], n),
        "employees": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(3, 1, n)),
        "visits": rng.poisson(3, n).astype(float),
    })
    y = (rng.random(n) < 1 / (1 + np.exp(2 - (frame["country"] == "US") - 0.2 * frame["visits"]))).astype(int)
    model = LogisticBaseline(["country", "industry"], ["employees", "visits"]).fit(frame, y)

    # The reference: the same pipeline, fitted the same way, scored by sklearn.
    x = model._frame(frame)
    prep = ColumnTransformer([
        ("cat0", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), ["country"]),
        ("cat1", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20), ["industry"]),
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                              StandardScaler()),
         ["employees", "visits"]),
    ], sparse_threshold=1.0)
    reference = make_pipeline(prep, LogisticRegression(max_iter=500, C=1.0)).fit(x, y)
    new = pd.DataFrame({"country": ["DE", "rare1", "never seen", None], "industry": ["b", None, "z", "a"],
                        "employees": [10.0, np.nan, 1e6, 3.0], "visits": [0.0, 5.0, np.nan, 2.0]})
    for rows in (frame.head(500), new):
        want = reference.predict_proba(model._frame(rows))[:, 1]
        np.testing.assert_allclose(model.predict_proba(rows), want, rtol=1e-9, atol=1e-12)
        # The contributions add up to the log-odds, relative to the average training lead.
        logit = reference.decision_function(model._frame(rows))
        np.testing.assert_allclose(model.contributions(rows).sum(axis=1) + model.intercept_ + model.center_.sum(),
                                   logit, rtol=1e-9, atol=1e-9)
    # Columns as arrays, as the real-time API passes them.
    arrays = {c: new[c].to_numpy() for c in new.columns}
    np.testing.assert_allclose(model.predict_proba(arrays), model.predict_proba(new), rtol=1e-12)
    # A handful of leads goes by dict lookup, many by index: the same terms.
    many = pd.concat([new] * 20, ignore_index=True)
    np.testing.assert_allclose(model.predict_proba(many)[:4], model.predict_proba(new), rtol=1e-12)


def test_a_feature_with_no_value_in_training_changes_nothing():
    """An export where no activity came before any lead arrived leaves "days since the last activity" empty in
    every training row: the baseline fits (it used to stop training with an IndexError), and the feature moves
    no probability, whatever value a new lead has."""
    rng = np.random.default_rng(2)
    n = 2000
    frame = pd.DataFrame({"country": rng.choice(["DE", "FR", "US"], n), "visits": rng.poisson(3, n).astype(float),
                          "silence": np.full(n, np.nan)})
    y = (rng.random(n) < 1 / (1 + np.exp(1.5 - 0.3 * frame["visits"]))).astype(int)
    with_empty = LogisticBaseline(["country"], ["visits", "silence"]).fit(frame, y)
    without = LogisticBaseline(["country"], ["visits"]).fit(frame.drop(columns="silence"), y)
    new = frame.head(300).assign(silence=rng.exponential(10, 300))
    p = with_empty.predict_proba(new)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, without.predict_proba(new), rtol=1e-4)


def test_a_skewed_head_count_enters_as_its_log():
    """A win's log-odds rising 0.3 per log of the head count, which is log-normal: linear in the raw count, the
    slope would be set by a few huge companies. The logistic regression takes the signed log (the less skewed
    of the two) and finds the slope; a roughly symmetric feature stays as it is."""
    rng = np.random.default_rng(4)
    n = 40_000
    employees = np.exp(rng.normal(4, 1.5, n)).round() + 1
    score = rng.normal(0, 1, n)
    frame = pd.DataFrame({"employees": employees, "score": score})
    y = (rng.random(n) < 1 / (1 + np.exp(2.5 - 0.3 * (np.log(employees) - 4) - 0.5 * score))).astype(int)
    model = LogisticBaseline([], ["employees", "score"]).fit(frame, y)
    assert model.logged_ == ["employees"]
    assert abs(model.numeric_terms_["employees"][2] - 0.3) < 0.05, model.numeric_terms_
    assert abs(model.numeric_terms_["score"][2] - 0.5) < 0.05, model.numeric_terms_
