"""visiontool: classify, detect, segment, stylize, train and export convolutional networks from the command line.

Each command is also a library call that yields rows (dicts, as README's "Output schema"):

    import visiontool
    for row in visiontool.classify(["photos/"], model="resnet18", top_k=3):
        print(row["path"], row["top"][0]["label"])
    for row in visiontool.detect(["street.jpg"], model="fasterrcnn_resnet50_fpn", conf=0.5):
        print(row["detections"])
    for row in visiontool.segment(["street.jpg"], model="lraspp_mobilenet_v3_large", save_dir="out/"):
        print(row["mask"], row["classes"][0]["label"])
    for row in visiontool.stylize(["photos/"], style="mosaic.onnx", save_dir="out"):
        print(row["output"])

Importing the package imports nothing heavy; a call loads what its model needs.
"""

__version__ = "0.1.0"


def classify(sources, model: str = "resnet50", top_k: int = 5, **options):
    """Top-k labels per image; `options` are those of `visiontool.infer.Inference`."""
    from visiontool.infer import Inference
    from visiontool.tasks.classify import Classify

    return Inference(Classify(top_k), sources, model, **options).rows()


def detect(sources, model: str = "griddet-digits", conf: float | None = None, iou: float = 0.5,
           classes=None, max_det: int = 100, save_dir=None, save_crops: bool = False, **options):
    """Boxes per image in original pixels; `options` are those of `visiontool.infer.Inference`.
    conf None: the model's own threshold (see tasks.detect.Detect)."""
    from visiontool.infer import Inference
    from visiontool.tasks.detect import Detect

    return Inference(Detect(conf, iou, classes, max_det, save_dir, save_crops), sources, model, **options).rows()


def segment(sources, model: str = "lraspp_mobilenet_v3_large", save_dir=None, alpha: float = 0.5,
            classes=None, **options):
    """A class per pixel: masks (and overlays) in `save_dir`, or masks in ./segment-out without
    it; rows with the classes present. `options` are those of `visiontool.infer.Inference`."""
    from visiontool.infer import Inference
    from visiontool.tasks.segment import Segment

    return Inference(Segment(save_dir, alpha, classes), sources, model, **options).rows()


def stylize(sources, style: str, save_dir="stylized", **stylize_options):
    """Paintings of each image in `style` (a style network, or a style image for the optimize
    method), written to `save_dir`; `stylize_options` are `Stylize`'s (method, size, strength,
    preserve_color, steps, ...) and those of `visiontool.infer.Inference`."""
    import inspect

    from visiontool.infer import Inference
    from visiontool.tasks.stylize import Stylize

    own = set(inspect.signature(Stylize).parameters)
    task = Stylize(save_dir=save_dir, **{k: v for k, v in stylize_options.items() if k in own})
    return Inference(task, sources, style, **{k: v for k, v in stylize_options.items() if k not in own}).rows()
