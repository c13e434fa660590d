"""Heterogeneous placement on a local three-node Ray cluster shaped like cluster/*.yaml.

    head     0 CPUs                                  (like `ray start --head --num-cpus=0`)
    data     2 CPUs, label ray-subcluster=data       (the CPU-only data group)
    trainer  2 CPUs, label ray-subcluster=train, 2 "fake_gpu" (a custom resource standing in for GPUs)

The data stage is pipelines.data.build_train_dataset (its PairMaker actors) plus one tagging stage that
writes the node id it ran on into every row; the trainers record their own node id and the tags of the
rows they consumed. Data is pinned by the dataset-level label selector (restated in ray.train.DataConfig,
which replaces a dataset's execution options); trainers by their fake_gpu resource and a label selector.
"""

import json

import numpy as np
import pytest
import ray
import ray.data
import ray.train
from ray.cluster_utils import Cluster
from ray.train.torch import TorchTrainer
from ray.util.state import list_actors

from degradations import BicubicConfig
from pipelines.data import DataConfig, build_train_dataset, execution_options
from tests.ray_head import free_port

DATA = {"ray-subcluster": "data"}
TRAIN = {"ray-subcluster": "train"}


@pytest.fixture(scope="module")
def three_node_cluster():
    # The dashboard serves the state API (list_actors); a free port, as other Ray instances may hold 8265.
    head_args = {"num_cpus": 0, "include_dashboard": True, "dashboard_port": free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    dashboard_port = head_args["dashboard_port"]
    nodes = {
        "data": cluster.add_node(num_cpus=2, labels=DATA),
        "trainer": cluster.add_node(num_cpus=2, labels=TRAIN, resources={"fake_gpu": 2}),
    }
    cluster.wait_for_nodes()
    if ray.is_initialized():  # another module's shared local Ray
        ray.shutdown()
    ray.init(address=cluster.address)
    ids = {"head": cluster.head_node.node_id} | {name: node.node_id for name, node in nodes.items()}
    yield cluster.address, ids, dashboard_port
    ray.shutdown()
    cluster.shutdown()


def _tag_node(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    batch["data_node"] = np.full(len(batch["index"]), ray.get_runtime_context().get_node_id())
    return batch


def _record_placement(loop_config: dict) -> None:
    rank = ray.train.get_context().get_world_rank()
    tags = []
    for batch in ray.train.get_dataset_shard("train").iter_batches(batch_size=4, batch_format="numpy"):
        tags += batch["data_node"].tolist()
    record = {"trainer_node": ray.get_runtime_context().get_node_id(), "data_nodes": sorted(set(tags)),
              "rows": len(tags)}
    with open(f"{loop_config['out']}/rank{rank}.json", "w") as f:
        json.dump(record, f)


@pytest.mark.slow
def test_data_runs_on_cpu_nodes_and_trainers_on_gpu_nodes(three_node_cluster, tmp_path):
    address, nodes, _ = three_node_cluster
    data_config = DataConfig(degradation=BicubicConfig(scale=4), patch_size=32, crop_margin=0,
                             num_cpu_workers=1, rows_per_task=4)
    dataset = build_train_dataset(data_config, num_samples=32).map_batches(_tag_node, batch_format="numpy")
    dataset.context.execution_options.label_selector = DATA
    options = execution_options()
    options.label_selector = DATA
    trainer = TorchTrainer(
        _record_placement,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5, "fake_gpu": 1},
                                               label_selector=TRAIN),
        run_config=ray.train.RunConfig(name="placement", storage_path=str(tmp_path / "runs")),
        datasets={"train": dataset},
        dataset_config=ray.train.DataConfig(execution_options=options),
    )
    trainer.fit()

    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sum(r["rows"] for r in records) == 32
    assert {r["trainer_node"] for r in records} == {nodes["trainer"]}
    assert {n for r in records for n in r["data_nodes"]} == {nodes["data"]}
    actors = list_actors(address=address, detail=True, limit=1000)
    pair_makers = [a for a in actors if "PairMaker" in a.class_name]
    assert pair_makers and {a.node_id for a in pair_makers} == {nodes["data"]}
