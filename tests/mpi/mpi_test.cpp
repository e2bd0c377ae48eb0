// dsv3 under mpirun: the collectives' plumbing, and (with one thread per rank) the same answers
// from 1, 2 and 3 ranks.
#include <gtest/gtest.h>

#include <string>

#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

using test::run_command;

std::string mpirun(int np) { return std::string(DSV3_MPIRUN) + " -np " + std::to_string(np) + " "; }

TEST(MpiCollectives, EveryOperationOnOneTwoAndThreeRanks) {
  for (int np : {1, 2, 3}) {
    const auto r = run_command(mpirun(np) + DSV3_COLLECTIVES_PROBE);
    EXPECT_EQ(r.code, 0) << "np " << np << "\n" << r.out << r.err;
    for (int rank = 0; rank < np; ++rank)
      EXPECT_NE(r.out.find("ok rank " + std::to_string(rank) + " of " + std::to_string(np)), std::string::npos)
          << "np " << np << "\n" << r.out << r.err;
  }
}

TEST(MpiCollectives, ProbeAloneIsRankZeroOfOne) {
  const auto r = run_command(DSV3_COLLECTIVES_PROBE);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ok rank 0 of 1"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace dsv3
