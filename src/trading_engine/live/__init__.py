"""From the backtest to production: the deployed model, live signals, the signal ledger, paper
trading and the replay that proves the live path equals the backtest.

* `deployment`: the deployed model (a versioned, self-contained artifact: weights loaded with
  `weights_only=True`, scaler, feature list, rule and costs, data range, the evaluation's
  metrics, code and configuration hashes), the `deployed` pointer and rollback;
* `window`: how the deployed model's features are computed (`FeatureRecipe`) and the trailing
  window a live decision reads;
* `ledger`: the append-only, idempotent signal ledger (SQLAlchemy: SQLite or PostgreSQL) and
  the lock that keeps two runs apart;
* `signals`: one signals run (the store brought up to date over REST, the refusals, the model,
  the shared rule continued from the ledger's state);
* `paper`: the ledger's positions marked to market by the shared engine and cost model, beside
  the backtest of the same bars;
* `replay`: history replayed one bar at a time through the signals run, against the backtest;
* `service`: `python -m trading_engine signals --every 5m`.

No order is ever sent to an exchange, and no API key is needed: the exchange is only read
(public candles and funding rates).
"""
