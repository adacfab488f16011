r"""Runs one experiment of the paper's protocol from the command line.

Example (MNIST, 80% uniform noise, 1,000 training examples, LIMIT_L, beta=10)::

    python -m limit_tf.main --dataset=mnist --data_dir=../shared/data \
        --noise=uniform --noise_rate=0.8 --num_train_examples=1000 \
        --method=limit --predictor=laplace --beta=10 --epochs=100 --patience=30 \
        --workdir=runs/mnist_u80_n1000/limit_l

Prints progress lines (within long epochs and one per epoch: metrics, best
epoch, ETA) and the final results; everything is written to --workdir (see
limit_tf.workdir). Rerunning the same command resumes an interrupted run or
reports a finished one. Every flag is a field of limit_tf.config.ExperimentConfig.
Invalid flags exit with status 2 and a one-line message before anything is written.
"""

from __future__ import annotations

import json

from limit_tf import cli


def main(argv) -> None:
    del argv
    config = cli.config_from_flags()
    if config.strategy == "multi_worker":
        from limit_tf import distribute, paths

        paths.check(config.validate())

        distribute.get_strategy("multi_worker", cluster_timeout=config.cluster_timeout)  # before any other TF op
    import tensorflow as tf

    from limit_tf import train

    dataset = train.prepare(config)
    cli.log_config(config)
    try:
        results = train.run_experiment(config, dataset=dataset)
    except train.TrainingDivergedError as e:
        cli.fail(str(e), status=1)
    except (OSError, tf.errors.PermissionDeniedError, tf.errors.ResourceExhaustedError) as e:
        message = cli.storage_failure(e, config.workdir)
        if message is None:
            raise
        cli.fail(message, status=1)
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError) as e:
        if config.strategy != "multi_worker":
            raise
        reason = e.message.split("\n")[0].split("}}")[-1].strip()
        cli.fail(
            f"another worker stopped ({type(e).__name__}: {reason}); run the same command on every worker to "
            "resume from the last finished epoch.",
            status=1,
        )
    keys = ("test_accuracy", "best_val_accuracy", "best_epoch", "epochs_run", "realized_noise_rate")
    summary = {k: results[k] for k in keys if results.get(k) is not None}
    print(json.dumps(summary, indent=2))
    if results.get("test_accuracy") is None:
        print("No clean test set was given (--test_data): best_val_accuracy is measured on labels as noisy as yours.")
    if results.get("realized_noise_rate") is None:
        print(
            "Your labels are taken as given, so their true noise rate is unknown here: "
            f"python -m limit_tf.detection --run={config.workdir} estimates it and lists the suspects."
        )


def run() -> None:
    cli.run(main, cli.define_config_flags)


if __name__ == "__main__":
    run()
