"""import-checkpoint on a TF 1.x-style checkpoint written here with the original tensor names."""

import numpy as np
import pytest

from quantize.cli import main

SIZE = 32


def _write_tf1_checkpoint(folder):
    """A small Keras-on-TF1-like graph: input_1 -> conv -> (dropout-like when learning) -> probs/Softmax."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="input_1")
        phase = tf.compat.v1.placeholder_with_default(tf.constant(True), [], name="keras_learning_phase")
        init = tf.compat.v1.random_normal_initializer(stddev=0.5, seed=1)
        w = tf.compat.v1.get_variable("conv/kernel", [3, 3, 3, 8], initializer=init)
        h = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))
        h = tf.where(phase, tf.zeros_like(h), h)  # the training branch wipes the signal: must be frozen off
        h = tf.reduce_mean(h, [1, 2])
        d = tf.compat.v1.get_variable("probs/kernel", [8, 2], initializer=init)
        with tf.compat.v1.name_scope("probs"):
            tf.nn.softmax(tf.matmul(h, d), name="Softmax")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / "model"), global_step=7, write_meta_graph=False)
            saver.export_meta_graph(str(folder / "model.meta"))
            pixels = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
            expected = sess.run("probs/Softmax:0", {"input_1:0": pixels / 255.0, "keras_learning_phase:0": False})
    return pixels, expected


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    pixels, expected = _write_tf1_checkpoint(ckpt)
    assert sorted(p.name for p in ckpt.iterdir() if p.name != "checkpoint")[:3] == [
        "model-7.data-00000-of-00001", "model-7.index", "model.meta"]
    out = ckpt.parent / "imported.pb"
    assert main(["import-checkpoint", str(ckpt), "--out", str(out), "-q"]) == 0
    return out, pixels, expected


def test_imported_graph_runs_in_inference_mode(imported):
    from edge_sca.preprocess import to_float
    from quantize.checkpoint import load_frozen, run_frozen

    out, pixels, expected = imported
    got = run_frozen(load_frozen(out), to_float(pixels))
    assert np.allclose(got, expected, atol=1e-5)
    assert not np.allclose(expected, 0.5)  # the learning-phase branch (all 0.5) was not taken


def test_imported_graph_converts_to_named_int8_and_float32(imported, io_names):
    from edge_sca.interpreter import interpreter_class
    from edge_sca.preprocess import to_float
    from quantize.checkpoint import load_frozen
    from quantize.convert import convert, tensor_types_and_ops

    out, pixels, expected = imported
    fn = load_frozen(out)
    f32 = convert(fn, "float32")
    assert io_names(f32) == ("input_1", "probs")
    interp = interpreter_class()[0](model_content=f32)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], to_float(pixels[:1]))
    interp.invoke()
    assert np.allclose(interp.get_tensor(interp.get_output_details()[0]["index"]), expected[:1], atol=1e-5)
    q = convert(fn, "int8", calib_pixels=pixels)
    assert io_names(q) == ("input_1", "probs")
    dtypes, _ = tensor_types_and_ops(q)
    assert "float32" not in dtypes


def test_bad_checkpoint_folders_are_refused(tmp_path, capsys):
    assert main(["import-checkpoint", str(tmp_path), "--out", str(tmp_path / "x.pb")]) == 2
    assert "model.meta" in capsys.readouterr().err
    assert main(["import-checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pb")]) == 2
    assert "not a folder" in capsys.readouterr().err
