package io.refstream.conformance;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.utils.Utils;

/**
 * The conformance driver the Python tests run (tests/conformance/java_program.py).
 *
 * <pre>
 * golden  AVRO_DIR IN.jsonl              {"file", "record" (Avro JSON)} -> {"file", "fingerprint", "hex"}
 * publish BOOTSTRAP AVRO_DIR IN.jsonl     {"topic", "file", "record"}: encode + publish each
 * decode  BOOTSTRAP AVRO_DIR SECONDS TOPIC=COUNT...   every record of each topic, decoded
 * partition IN.jsonl                    {"key" (hex), "partitions"}: the producer's partition
 * </pre>
 * Output is JSON Lines on stdout; any failure exits non-zero with the reason on stderr.
 */
public final class Conformance {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        switch (args[0]) {
            case "golden" -> golden(new File(args[1]), Path.of(args[2]), out);
            case "publish" -> publish(args[1], new File(args[2]), Path.of(args[3]), out);
            case "decode" -> decode(args[1], new File(args[2]), Integer.parseInt(args[3]),
                    List.of(args).subList(4, args.length), out);
            case "partition" -> partition(Path.of(args[1]), out);
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
    }

    private static GenericRecord fromAvroJson(Schema schema, JsonNode record) throws IOException {
        return new GenericDatumReader<GenericRecord>(schema)
                .read(null, DecoderFactory.get().jsonDecoder(schema, JSON.writeValueAsString(record)));
    }

    private static List<JsonNode> lines(Path path) throws IOException {
        List<JsonNode> found = new ArrayList<>();
        try (BufferedReader reader = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                if (!line.isBlank()) {
                    found.add(JSON.readTree(line));
                }
            }
        }
        return found;
    }

    private static void golden(File avroDir, Path input, PrintStream out) throws Exception {
        for (JsonNode line : lines(input)) {
            String file = line.get("file").asText();
            Schema schema = new Schema.Parser().parse(new File(avroDir, file));
            byte[] bytes = PublishShopEvent.encode(fromAvroJson(schema, line.get("record")));
            ObjectNode result = JSON.createObjectNode();
            result.put("file", file);
            result.put("fingerprint",
                    Long.toUnsignedString(SchemaNormalization.parsingFingerprint64(schema), 16));
            result.put("hex", HexFormat.of().formatHex(bytes));
            out.println(JSON.writeValueAsString(result));
        }
    }

    /** The partition kafka-clients' producer gives a keyed record (BuiltInPartitioner). */
    private static void partition(Path input, PrintStream out) throws Exception {
        for (JsonNode line : lines(input)) {
            byte[] key = HexFormat.of().parseHex(line.get("key").asText());
            int partitions = line.get("partitions").asInt();
            ObjectNode result = JSON.createObjectNode();
            result.put("key", line.get("key").asText());
            result.put("murmur2", Integer.toUnsignedLong(Utils.murmur2(key)));
            result.put("partition",
                    BuiltInPartitioner.partitionForKey(key, partitions));
            out.println(JSON.writeValueAsString(result));
        }
    }

    private static void publish(String bootstrap, File avroDir, Path input, PrintStream out)
            throws Exception {
        Map<String, Schema> schemas = new LinkedHashMap<>();
        int sent = 0;
        try (KafkaProducer<String, byte[]> producer = PublishShopEvent.producer(bootstrap)) {
            for (JsonNode line : lines(input)) {
                String file = line.get("file").asText();
                Schema schema = schemas.get(file);
                if (schema == null) {
                    schema = new Schema.Parser().parse(new File(avroDir, file));
                    schemas.put(file, schema);
                }
                PublishShopEvent.publish(producer, line.get("topic").asText(),
                        fromAvroJson(schema, line.get("record")));
                sent++;
            }
        }
        out.println("{\"published\": " + sent + "}");
    }

    private static List<String> recordPrefixes(File avroDir) {
        List<String> prefixes = new ArrayList<>();
        String[] names = avroDir.list((dir, name) -> name.endsWith(".v1.avsc")
                && (name.startsWith("derived_") || name.startsWith("log_")));
        if (names != null) {
            java.util.Arrays.sort(names);
            for (String name : names) {
                prefixes.add(name.substring(0, name.length() - ".v1.avsc".length()));
            }
        }
        return prefixes;
    }

    private static void decode(String bootstrap, File avroDir, int seconds, List<String> wanted,
                               PrintStream out) throws Exception {
        BinaryMessageDecoder<Object> decoder =
                ReadRewardDue.decoder(avroDir, recordPrefixes(avroDir).toArray(new String[0]));
        long deadline = System.nanoTime() + Duration.ofSeconds(seconds).toNanos();
        try (KafkaConsumer<String, byte[]> consumer =
                     ReadRewardDue.consumer(bootstrap, "conformance-" + System.nanoTime())) {
            for (String topicAndCount : wanted) {
                String topic = topicAndCount.substring(0, topicAndCount.lastIndexOf('='));
                int expected = Integer.parseInt(
                        topicAndCount.substring(topicAndCount.lastIndexOf('=') + 1));
                List<TopicPartition> partitions = new ArrayList<>();
                for (PartitionInfo info : consumer.partitionsFor(topic)) {
                    partitions.add(new TopicPartition(topic, info.partition()));
                }
                consumer.assign(partitions);
                consumer.seekToBeginning(partitions);
                int seen = 0;
                while (seen < expected) {
                    if (System.nanoTime() > deadline) {
                        throw new IllegalStateException(
                                topic + ": " + seen + " records, expected " + expected);
                    }
                    for (ConsumerRecord<String, byte[]> message :
                            consumer.poll(Duration.ofMillis(500))) {
                        GenericRecord event = (GenericRecord) decoder.decode(message.value());
                        ObjectNode result = JSON.createObjectNode();
                        result.put("topic", topic);
                        result.put("partition", message.partition());
                        result.put("offset", message.offset());
                        result.put("key", message.key());
                        result.put("record_name", event.getSchema().getFullName());
                        result.set("record", JSON.readTree(event.toString()));
                        out.println(JSON.writeValueAsString(result));
                        seen++;
                    }
                }
            }
        }
    }
}
