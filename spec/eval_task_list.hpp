// The evaluation tasks, one line each. Adding one: its row in
// spec/eval_tasks/NAME.cpp (eval_task_NAME(): keys, data, metrics), its
// runner in jobs/eval/tasks/NAME.cpp (run_eval_NAME), and one line here. The
// catalog (spec/eval_task.cpp) and the worker's runners
// (jobs/eval/tasks.cpp) are both built from this list, in this order.
#pragma once

#define QJOBS_EVAL_TASKS(X) \
  X(ppl)                    \
  X(wikitext_ppl)           \
  X(mc)                     \
  X(demo)                   \
  X(c4_ppl)
