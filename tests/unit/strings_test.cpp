// common/strings.hpp helpers that several layers share.
#include <gtest/gtest.h>

#include "common/strings.hpp"

namespace qjobs {
namespace {

TEST(Strings, WeightStemIsTheModuleOfAWeightTensorOnly) {
  EXPECT_EQ(weight_stem("model.layers.0.mlp.up_proj.weight"), "model.layers.0.mlp.up_proj");
  EXPECT_EQ(weight_stem("lm_head.weight"), "lm_head");
  EXPECT_EQ(weight_stem("x.weight"), "x");
  // Not a weight tensor, or no module before the suffix.
  EXPECT_EQ(weight_stem("model.layers.0.mlp.up_proj.bias"), "");
  EXPECT_EQ(weight_stem("model.layers.0.mlp.up_proj.weight_scale"), "");
  EXPECT_EQ(weight_stem("model.norm.weightx"), "");
  EXPECT_EQ(weight_stem(".weight"), "");
  EXPECT_EQ(weight_stem("weight"), "");
  EXPECT_EQ(weight_stem(""), "");
}

}  // namespace
}  // namespace qjobs
