"""`python -m gpt finetune-classifier`: finetune a base model into the spam classifier (or a classifier of any
classes from a CSV/TSV file), or re-measure one."""

from __future__ import annotations

import argparse

from gpt.classify.classifier import ClassifierMetrics
from gpt.classify.data import MIXES, SET_TITLES, SOURCES
from gpt.classify.finetune import (
    CLASSIFIER_PRESETS,
    HEAD_READS,
    ClassifierConfig,
    describe_training,
    finetune_classifier,
    measure_classifier,
    resources_line,
)
from gpt.cli.options import add_config_arguments, add_device_argument, check_device, config_overrides
from gpt.cli.progress import TqdmListener
from gpt.files import SHIPPED_BASE
from gpt.precision import DTYPES
from gpt.pretrained import MODEL_NAMES_HELP
from gpt.training.events import TrainingMonitor

HELP = "finetune a GPT into the spam classifier or one of your own classes (the book's chapter 6), or re-measure one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(SHIPPED_BASE),
                        help=f"base model: {MODEL_NAMES_HELP} (default: the shipped base, assets/models/base)")
    parser.add_argument("--out", help="folder to write the classifier to")
    parser.add_argument("--preset", default="book", choices=sorted(CLASSIFIER_PRESETS),
                        help="finetuning settings; the ClassifierConfig options override them (default: %(default)s)")
    parser.add_argument("--data", default="auto", choices=SOURCES,
                        help="the SMS collection: auto downloads the full one (cached), else uses the part in assets/")
    parser.add_argument("--mix", default="sms", choices=MIXES,
                        help="what to train on: sms, the book's SMS data alone; mixed, SMS plus SpamAssassin mail "
                             "plus modern messages from assets/spam/, tested on each (default: %(default)s)")
    parser.add_argument("--data-file", metavar="PATH",
                        help="train on your own classes instead: a CSV or TSV file with a text and a label column "
                             "(a header row 'text,label', or two unnamed columns), split 70/10/20 within each class; "
                             "replaces --data and --mix")
    parser.add_argument("--dtype", default="bfloat16", choices=list(DTYPES),
                        help="storage dtype of the classifier (default: %(default)s)")
    parser.add_argument("--evaluate", metavar="DIR", help="only re-measure the test figures of a saved classifier")
    add_device_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser, ClassifierConfig, default_note="the preset's")


def _print_metrics(evaluations: dict[str, ClassifierMetrics]) -> None:
    for name, metrics in evaluations.items():
        print(f"\n{SET_TITLES.get(name, name)} ({metrics.data_source})")
        print(f"test accuracy: {metrics.accuracy:.2%} on {metrics.n_test} messages")
        print(metrics.per_class_frame().to_string(float_format="{:.3f}".format))
        print(metrics.confusion_frame().to_string())


def run(args: argparse.Namespace) -> None:
    device = check_device(args.device)
    if args.evaluate:
        _print_metrics(measure_classifier(args.evaluate, device))
        return
    if not args.out:
        raise ValueError("--out is required (the folder to write the classifier to)")
    cfg = ClassifierConfig.preset(args.preset, **config_overrides(args, ClassifierConfig))
    bar = TqdmListener("finetune-classifier", enabled=not args.quiet)
    try:
        classifier = finetune_classifier(args.model, cfg, args.out, args.data, args.dtype, device,
                                         TrainingMonitor(bar), args.mix, args.data_file)
    finally:
        bar.close()
    meta = classifier.config["meta"]
    print(f"saved {args.out}: trained {describe_training(meta['finetune'])}; the head reads "
          f"{HEAD_READS[cfg.head_token]}")
    print(resources_line(meta))
    _print_metrics(classifier.test_metrics)
