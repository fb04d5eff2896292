package io.refstream.conformance;

import java.io.File;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/** Finance reads refstream.reward-due: rewards due and their reversals, on one topic. */
public final class ReadRewardDue {

    /**
     * A decoder for a topic that carries several record types. Every schema version refstream
     * ships goes into the store, so a message written with any of them is found by its
     * fingerprint; the reader schema is the union of the newest versions, and Avro's schema
     * resolution picks the branch of the record's own name.
     */
    public static BinaryMessageDecoder<Object> decoder(File avroDir, String... recordFilePrefixes)
            throws IOException {
        SchemaStore.Cache writers = new SchemaStore.Cache();
        List<Schema> newest = new ArrayList<>();
        for (String prefix : recordFilePrefixes) {
            Schema latest = null;
            for (int version = 1; new File(avroDir, prefix + ".v" + version + ".avsc").exists();
                    version++) {
                latest = new Schema.Parser().parse(
                        new File(avroDir, prefix + ".v" + version + ".avsc"));
                writers.addSchema(latest);
            }
            if (latest == null) {
                throw new IOException("no " + prefix + ".v1.avsc in " + avroDir);
            }
            newest.add(latest);
        }
        return new BinaryMessageDecoder<>(GenericData.get(), Schema.createUnion(newest), writers);
    }

    public static KafkaConsumer<String, byte[]> consumer(String bootstrapServers, String group) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        return new KafkaConsumer<>(config, new StringDeserializer(), new ByteArrayDeserializer());
    }

    public static void main(String[] args) throws Exception {
        // args: bootstrap servers, path to refstream's schemas/avro folder, optionally the
        // topic (refstream.reward-due unless REFSTREAM_TOPIC_PREFIX is changed)
        String topic = args.length > 2 ? args[2] : "refstream.reward-due";
        BinaryMessageDecoder<Object> decoder =
                decoder(new File(args[1]), "derived_rewarddue", "derived_rewardreversal");
        try (KafkaConsumer<String, byte[]> consumer = consumer(args[0], "finance")) {
            consumer.subscribe(List.of(topic));
            while (true) {
                for (ConsumerRecord<String, byte[]> message : consumer.poll(Duration.ofSeconds(1))) {
                    GenericRecord event = (GenericRecord) decoder.decode(message.value());
                    String kind = event.getSchema().getName();  // RewardDue or RewardReversal
                    System.out.println(kind + " " + event.get("reward_id") + " "
                            + event.get("amount_minor") + " " + event.get("currency"));
                }
                consumer.commitSync();  // after acting on the batch: a crash repeats, never loses
            }
        }
    }
}
