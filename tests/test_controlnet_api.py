"""ControlNet through the real server and real clients: ``webuiapi``'s ``ControlNetUnit`` and its ControlNet calls,
and the extension's raw JSON shapes (``alwayson_scripts.ControlNet``, ``/controlnet/*``), against tiny ControlNets
in the layouts users download, in a real ``webui.py`` process."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import webuiapi
from PIL import Image

from tests.support.server import make_data_dir, running_server, wait_for_model, webuiapi_client
from tests.support.tiny_controlnet import write_tiny_controlnet, write_tiny_depth_anything
from tests.support import tiny_dwpose
from tests.support.tiny_lineart import write_lineart

pytestmark = pytest.mark.timeout(240)

SEED = 77


def _square(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    image.paste((255, 255, 255), (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return image


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn-api")
    data_dir = make_data_dir(root, ["alpha"])
    cn = data_dir / "models" / "ControlNet"
    write_tiny_controlnet(cn, "control_v11p_sd15_canny", "sd1", "ldm", fmt="pth")
    write_tiny_controlnet(cn / "diffusers", "controlnet_sd15_tile", "sd1", "diffusers")
    write_tiny_controlnet(cn, "controlnet_xl_canny", "sdxl", "diffusers")
    write_tiny_depth_anything(cn / "annotators")
    # the extension's own preprocessor folder, as users copy it from an A1111 install
    write_lineart(data_dir / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "lineart",
                  "sk_model.pth")
    (cn / "annotators" / "hed").mkdir(parents=True)
    (cn / "annotators" / "hed" / "ControlNetHED.pth").write_bytes(b"PK\x03\x04 an interrupted download")
    # DWPose: a detector that always sees one person and a pose model whose keypoints are known bins
    pose_dir = cn / "annotators" / "openpose"
    tiny_dwpose.write_detector(pose_dir, [tiny_dwpose.Box(320.0, 320.0, 240.0, 480.0, objectness=0.9)])
    points = tiny_dwpose.KEYPOINTS
    tiny_dwpose.write_pose(pose_dir, [(13 * k + 40) % 500 for k in range(points)],
                           [(17 * k + 60) % 700 for k in range(points)], [0.9] * points)
    with running_server(data_dir) as srv:
        wait_for_model(srv)
        yield srv


@pytest.fixture(scope="module")
def api(server):
    client = webuiapi_client(server)
    yield client
    client.session.close()


def _model(server, name: str) -> str:
    return next(t for t in server.get_json("/controlnet/model_list")["model_list"] if t.startswith(name + " ["))


def _txt2img(server, units, **extra):
    body = {"prompt": "a cube", "width": 64, "height": 64, "steps": 2, "seed": SEED, "sampler_name": "Euler",
            "alwayson_scripts": {"ControlNet": {"args": units}}, **extra}
    return server.request("POST", "/sdapi/v1/txt2img", body, timeout=120)


def test_catalogue_routes_have_the_extension_shapes(api, server):
    assert api.controlnet_version() == 3
    titles = api.controlnet_model_list()
    # name [legacy hash], sorted by file name; sub-folders scanned; "None" is not listed (the extension's list)
    assert [t.split(" [")[0] for t in titles] == ["control_v11p_sd15_canny", "controlnet_sd15_tile",
                                                  "controlnet_xl_canny"]
    assert all(len(t.split(" [")[1]) == 9 for t in titles)
    modules = server.get_json("/controlnet/module_list")
    assert modules["module_list"][0] == "none" and "canny" in modules["module_list"]
    assert modules["module_detail"]["canny"]["sliders"][1] == {"name": "Low Threshold", "value": 100, "min": 1,
                                                                "max": 255, "step": 1}
    aliases = server.get_json("/controlnet/module_list?alias_names=true")["module_list"]
    assert "invert (from white bg & black line)" in aliases
    types = server.get_json("/controlnet/control_types")["control_types"]
    assert types["Canny"]["default_option"] == "canny"
    assert [m.split(" [")[0] for m in types["Canny"]["model_list"]] == ["None", "control_v11p_sd15_canny",
                                                                        "controlnet_xl_canny"]
    assert types["Canny"]["default_model"].startswith("control_v11p_sd15_canny [")  # a v1.1 model first
    assert types["Tile"]["model_list"][1].startswith("controlnet_sd15_tile [")
    assert server.get_json("/controlnet/settings") == {"control_net_unit_count": 3}
    scripts = server.get_json("/sdapi/v1/scripts")
    assert "controlnet" in scripts["txt2img"] and "controlnet" in scripts["img2img"]


def test_webuiapi_unit_changes_the_image_and_writes_the_infotext(api, server):
    plain = api.txt2img(prompt="a cube", width=64, height=64, steps=2, seed=SEED)
    unit = webuiapi.ControlNetUnit(image=_square(), module="canny", model="control_v11p_sd15_canny",
                                   threshold_a=100, threshold_b=200)
    # a fresh alwayson_scripts: webuiapi writes the units into the dict it is given, and its default is one
    # shared dict, so every later call of any client in this process would send them again
    result = api.txt2img(prompt="a cube", width=64, height=64, steps=2, seed=SEED, controlnet_units=[unit],
                         alwayson_scripts={})
    assert len(result.images) == 2  # the image, then the detected map
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))
    text = result.info["infotexts"][0]
    # the model as the request named it (the extension writes the unit's field as given)
    assert ('ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny, Weight: 1.0, Resize Mode: Resize and Fill, '
            'Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, '
            'Pixel Perfect: False, Control Mode: Balanced"') in text
    detected = np.asarray(result.images[1].convert("L"))
    assert detected.shape == (64, 64) and set(np.unique(detected)) <= {0, 255} and detected.max() == 255


def test_weight_zero_and_disabled_units_give_the_image_without_controlnet(server):
    model = _model(server, "control_v11p_sd15_canny")
    status, plain = _txt2img(server, [])
    assert status == 200
    for unit in ({"image": _b64(_square()), "module": "canny", "model": model, "weight": 0},
                 {"image": _b64(_square()), "module": "canny", "model": model, "enabled": False}):
        status, body = _txt2img(server, [unit])
        assert status == 200, body
        assert np.array_equal(_pixels(body["images"][0]), _pixels(plain["images"][0]))


def test_extension_field_aliases_and_int_enums_are_accepted(server):
    model = _model(server, "control_v11p_sd15_canny")
    legacy = {"input_image": _b64(_square()), "module": "canny", "model": model.split(" [")[0], "lowvram": True,
              "guidance": 0.5, "resize_mode": 0, "control_mode": 2, "processor_res": -1, "threshold_a": -1}
    status, body = _txt2img(server, [legacy], alwayson_scripts={"controlnet": {"args": [legacy]}})
    assert status == 200, body
    text = body["info"]
    assert "Resize Mode: Just Resize" in text and "Control Mode: ControlNet is more important" in text
    assert "Guidance End: 0.5" in text and "Threshold A: 100," in text  # -1: the slider's default


@pytest.mark.parametrize("unit, field, words", [
    ({"module": "no_such_module"}, "alwayson_scripts.ControlNet.args.0.module", "not found"),
    ({"model": "no_such_model"}, "alwayson_scripts.ControlNet.args.0.model", "model not found"),
    ({"image": "not base64 at all!"}, "alwayson_scripts.ControlNet.args.0.image", ""),
    ({"image": None}, "alwayson_scripts.ControlNet.args.0.image", "no input image"),
    ({"weight": 3}, "alwayson_scripts.ControlNet.args.0.weight", "outside"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "alwayson_scripts.ControlNet.args.0.guidance_start", ">"),
    ({"resize_mode": "Stretch"}, "alwayson_scripts.ControlNet.args.0.resize_mode", "unknown"),
    ({"control_mode": 7}, "alwayson_scripts.ControlNet.args.0.control_mode", "not one of"),
    ({"module": "depth_midas"}, "alwayson_scripts.ControlNet.args.0.module", "dpt-hybrid-midas"),
    ({"module": "openpose_full"}, "alwayson_scripts.ControlNet.args.0.module", "hand_pose_model.pth"),
    ({"model": "controlnet_xl_canny"}, "alwayson_scripts.ControlNet.args.0.model", "SDXL"),
])
def test_bad_units_are_4xx_naming_unit_and_field_and_the_server_keeps_serving(server, unit, field, words):
    good = {"image": _b64(_square()), "module": "canny", "model": _model(server, "control_v11p_sd15_canny")}
    status, body = _txt2img(server, [{**good, **unit}])
    assert status in (400, 422), body
    assert body["detail"][0]["loc"] == ["body", field] and words in body["detail"][0]["msg"]
    assert server.get_json("/sdapi/v1/options")["sd_model_checkpoint"].startswith("alpha")
    assert _txt2img(server, [good])[0] == 200


def test_detect_with_either_image_field_and_its_errors(api, server):
    maps = api.controlnet_detect([_square()], module="canny", threshold_a=100, threshold_b=200)
    assert len(maps.images) == 1  # webuiapi decodes the response's images
    edges = np.asarray(maps.images[0].convert("RGB"))[:, :, 0]
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "canny",
                                                                 "controlnet_input_images": [_b64(_square())],
                                                                 "controlnet_threshold_a": 100,
                                                                 "controlnet_threshold_b": 200})
    assert status == 200 and body["info"] == "Success" and np.array_equal(_pixels(body["images"][0])[:, :, 0], edges)
    assert edges.max() == 255 and edges[32, 32] == 0  # edges on the square's border, none inside
    for payload, field in (({"controlnet_module": "nope", "controlnet_input_images": [_b64(_square())]},
                            "controlnet_module"),
                           ({"controlnet_module": "canny"}, "controlnet_input_images"),
                           ({"controlnet_module": "inpaint_only", "controlnet_input_images": [_b64(_square())]},
                            "controlnet_masks")):
        status, body = server.request("POST", "/controlnet/detect", payload)
        assert status == 422 and body["detail"][0]["loc"] == ["body", field]


def test_depth_anything_from_the_annotators_folder_in_detect_and_generation(server):
    square = _b64(_square())
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "depth_anything",
                                                                 "controlnet_input_images": [square],
                                                                 "controlnet_processor_res": 64})
    assert status == 200, body
    depth = _pixels(body["images"][0])
    assert depth.shape == (64, 64, 3) and depth.min() == 0 and depth.max() == 255
    unit = {"image": square, "module": "depth_anything", "model": _model(server, "control_v11p_sd15_canny"),
            "processor_res": 64}
    status, body = _txt2img(server, [unit])
    assert status == 200, body
    assert len(body["images"]) == 2 and "Module: depth_anything" in body["info"]


def test_lineart_from_the_extensions_downloads_folder_in_detect_and_generation(server):
    """sk_model.pth where sd-webui-controlnet keeps it (extensions/sd-webui-controlnet/annotator/downloads/lineart):
    /controlnet/detect draws with it and a unit with lineart_realistic generates; a file it lacks is named."""
    square = _b64(_square(96))
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "lineart_realistic",
                                                                 "controlnet_input_images": [square],
                                                                 "controlnet_processor_res": 64})
    assert status == 200, body
    line = _pixels(body["images"][0])
    assert line.shape == (64, 64, 3) and len(np.unique(line)) > 2 and "poses" not in body
    unit = {"image": square, "module": "lineart", "model": _model(server, "control_v11p_sd15_canny"),
            "processor_res": 64}
    status, body = _txt2img(server, [unit])
    assert status == 200, body
    assert len(body["images"]) == 2 and "Module: lineart" in body["info"]
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "lineart_coarse",
                                                                 "controlnet_input_images": [square]})
    assert status == 422 and "sk_model2.pth" in body["detail"][0]["msg"]


def test_dw_openpose_full_returns_the_openpose_json_and_render_draws_it_back(server):
    """/controlnet/detect with dw_openpose_full answers the map and, like the extension, each image's OpenPose JSON
    under "poses"; /controlnet/render_openpose_json draws that JSON into the same map; bad JSON is a 422."""
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "dw_openpose_full",
                                                                 "controlnet_input_images": [_b64(_square(64))],
                                                                 "controlnet_processor_res": 64})
    assert status == 200, body
    pose_map = _pixels(body["images"][0])
    assert pose_map.shape == (64, 64, 3) and pose_map.any()
    (pose,) = body["poses"]
    assert (pose["canvas_width"], pose["canvas_height"]) == (64, 64)
    person = pose["people"][0]
    assert len(person["pose_keypoints_2d"]) == 18 * 3 and len(person["hand_left_keypoints_2d"]) == 21 * 3
    assert len(person["face_keypoints_2d"]) == 70 * 3  # DWPose's 68 face points and the two eyes
    status, rendered = server.request("POST", "/controlnet/render_openpose_json", [pose])
    assert status == 200 and rendered["info"] == "Success", rendered
    assert np.array_equal(_pixels(rendered["images"][0]), pose_map)
    status, empty = server.request("POST", "/controlnet/render_openpose_json", [])
    assert status == 200 and empty == {"info": "No pose data detected."}
    broken = {**pose, "people": [{"pose_keypoints_2d": [1.0, 2.0]}]}
    status, body = server.request("POST", "/controlnet/render_openpose_json", [broken])
    assert status == 422 and body["detail"][0]["loc"] == ["body", "pose_data.0"], body
    assert "people[0].pose_keypoints_2d" in body["detail"][0]["msg"]  # the bad list named


def test_a_damaged_annotator_file_is_a_422_naming_it_and_the_server_keeps_serving(server):
    square = _b64(_square())
    status, body = server.request("POST", "/controlnet/detect", {"controlnet_module": "softedge_hed",
                                                                 "controlnet_input_images": [square]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "controlnet_module"], body
    assert "ControlNetHED.pth" in body["detail"][0]["msg"]
    unit = {"image": square, "module": "softedge_hed", "model": _model(server, "control_v11p_sd15_canny")}
    status, body = _txt2img(server, [unit])
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "alwayson_scripts.ControlNet.args.0.module"], body
    assert "ControlNetHED.pth" in body["detail"][0]["msg"]
    status, body = _txt2img(server, [{**unit, "module": "canny"}])
    assert status == 200 and len(body["images"]) == 2  # the server and its model are still there


def test_img2img_unit_without_image_uses_the_init_image(api, server):
    model = _model(server, "controlnet_sd15_tile")
    init = _b64(_square())
    body = {"prompt": "a cube", "init_images": [init], "width": 64, "height": 64, "steps": 3, "seed": SEED,
            "denoising_strength": 0.6}
    status, plain = server.request("POST", "/sdapi/v1/img2img", body, timeout=120)
    assert status == 200
    unit = {"module": "tile_resample", "model": model}
    status, with_cn = server.request("POST", "/sdapi/v1/img2img",
                                     {**body, "alwayson_scripts": {"ControlNet": {"args": [unit]}}}, timeout=120)
    assert status == 200, with_cn
    assert len(with_cn["images"]) == 2
    assert not np.array_equal(_pixels(with_cn["images"][0]), _pixels(plain["images"][0]))
    assert np.array_equal(_pixels(with_cn["images"][1]), np.asarray(_square()))  # the map is the init image
