"Run under `accelerate launch` by test_faults.py: two CPU processes train two steps together; each writes its weights."
import sys
from pathlib import Path
from safetensors.torch import save_file
from lllite_nb.fit import default_callbacks, train
from lllite_nb.trainer import Callback, TrainConfig

out, data = Path(sys.argv[1]), Path(sys.argv[2])
class Dump(Callback):  # each process writes its own weights after the last step
    def after_fit(self, run):
        sd = {k: v.detach().contiguous() for k, v in run.network.state_dict().items()}
        save_file(sd, str(out / f"rank{run.accelerator.process_index}.safetensors"))
train(TrainConfig(train_data_dir=str(data / "train/images"), conditioning_data_dir=str(data / "train/conditioning"),
                  caption_extension=".txt", resolution="64", train_batch_size=4, cond_emb_dim=8, network_dim=16,
                  learning_rate=1e-3, max_train_steps=2, output_dir=str(out / "run"), output_name="mp"),
      callbacks=[Dump(), *default_callbacks()])
